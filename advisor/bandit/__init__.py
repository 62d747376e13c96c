"""Exact softmax-bandit reduction of GRPO: the built-in test bed, ground truth and sweep objective.

One prompt, ``n`` completions ("arms") with fixed rewards ``r``; the policy is
``pi = softmax(theta)`` and the observable is the mean reward ``p = pi . r`` (TRL's logged
``reward``). With an infinite group (``num_generations=None``) the GRPO update is replaced by its
exact expectation over completions drawn from the sampling policy ``pi_old``; with a finite group
``G`` completions are drawn, normalised as TRL does (``(r - mean) / (std + eps)``, unbiased std)
and reused for ``K_ref`` optimizer steps.
Derivations and measured facts: ``bandit-findings.md`` section 1 (update equations), 3 (stiffness),
5 (regime rules) and 7 (finite G).

Conventions:
    theta: logits. Inside the kernels arrays are arm-major, shape ``(n, B)``: one row per arm,
        one column per configuration (``B`` configurations run in lock step).
    pi, pi_old: ``softmax(theta)``, ``softmax(theta_old)``; ``p = pi . r``.
    A: advantages ``(r - m_old) / (s_old + eps)`` ("std") or ``r - m_old`` ("mean", Dr GRPO).
    eta: learning rate; mu: heavy-ball momentum; K_ref: refresh interval (piecewise scheme);
        d: sliding lag ``theta_old = theta_{k-d}``; G: group size; beta: KL coefficient (k3).
    K, K_c, K_o: stiffness of the slowest mode and its current-policy / sampling-policy parts.

Ascent direction ``g(theta, theta_old)`` (G infinite): ``ratio`` ``pi*(A - <A>_pi)``; ``stale``
the on-policy direction evaluated at ``theta_old`` (pure delay); ``logprob``
``pi_old*A - pi*<A>_pi_old``; k3 KL adds ``-beta*(w - pi*sum(w))`` with
``w = pi_old*(1 - pi_ref/pi)``. Heavy ball: ``theta += eta*g + mu*(theta - theta_prev)``.

Modules (private, one concept each; every name is re-exported here): ``_problem``
(:class:`BanditProblem` and presets), ``_kernel`` (the update on arm-major arrays),
``_sampling`` (refresh of ``pi_old``, group draws), ``_optim`` (heavy ball, Adam),
``_simulate`` (:func:`simulate`, the lock-step loop), ``_result`` (:class:`BanditRun`),
``_groups`` (exact finite-G expectation), ``_fixed_point`` (:func:`fixed_point`,
:func:`jacobian_stiffness`), ``_classify`` (:func:`classify`) and ``_threshold``
(:func:`empirical_threshold`).

Example:
    >>> problem = BanditProblem.reference()
    >>> run = simulate(problem, learning_rate=[0.1, 0.5], n_steps=2000)
    >>> run.reward_current.shape, round(run.p_star, 4)
    ((2, 2000), 0.8536)
"""

from __future__ import annotations

from advisor.bandit._classify import _REGIMES as _REGIMES
from advisor.bandit._classify import _codes as _codes
from advisor.bandit._classify import _regime_codes as _regime_codes
from advisor.bandit._classify import classify
from advisor.bandit._fixed_point import _field as _field
from advisor.bandit._fixed_point import _gauge_basis as _gauge_basis
from advisor.bandit._fixed_point import _p_star as _p_star
from advisor.bandit._fixed_point import _solve_fixed_point as _solve_fixed_point
from advisor.bandit._fixed_point import fixed_point
from advisor.bandit._fixed_point import jacobian_stiffness
from advisor.bandit._groups import _MAX_COMPOSITIONS as _MAX_COMPOSITIONS
from advisor.bandit._groups import _compositions as _compositions
from advisor.bandit._groups import _expected_group as _expected_group
from advisor.bandit._groups import _logits as _logits
from advisor.bandit._groups import expected_update_finite_g
from advisor.bandit._kernel import FloatArray as FloatArray
from advisor.bandit._kernel import _Kernel as _Kernel
from advisor.bandit._kernel import _softmax as _softmax
from advisor.bandit._optim import _Optimizer as _Optimizer
from advisor.bandit._problem import BanditProblem
from advisor.bandit._problem import _as_float_tuple as _as_float_tuple
from advisor.bandit._result import BanditRun
from advisor.bandit._sampling import _sample_counts as _sample_counts
from advisor.bandit._sampling import _Sampler as _Sampler
from advisor.bandit._simulate import _check_all as _check_all
from advisor.bandit._simulate import _config_array as _config_array
from advisor.bandit._simulate import _configs as _configs
from advisor.bandit._simulate import _run as _run
from advisor.bandit._simulate import simulate
from advisor.bandit._threshold import _default_lr_range as _default_lr_range
from advisor.bandit._threshold import empirical_threshold


__all__ = [
    "BanditProblem",
    "BanditRun",
    "simulate",
    "fixed_point",
    "jacobian_stiffness",
    "expected_update_finite_g",
    "classify",
    "empirical_threshold",
]

"""The on-policy fixed point ``theta*`` and the Jacobian stiffness ``K = K_c + K_o`` there.

Conventions:
    theta, theta_old: 1-D logits, shape ``(n,)``; the gauge direction ``(1, ..., 1)`` does not
    change the policy, so solutions live in the ``n - 1`` directions of ``_gauge_basis``.
    size: group size ``G`` (``None``: infinite group).
    K, K_c, K_o: stiffness of the slowest mode and its current-policy / sampling-policy parts
    (bandit-findings.md section 3).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor.bandit._groups import _expected_group
from advisor.bandit._kernel import FloatArray
from advisor.bandit._kernel import _Kernel
from advisor.bandit._kernel import _softmax
from advisor.bandit._problem import BanditProblem
from advisor.exceptions import AdvisorError


def _gauge_basis(n: int) -> FloatArray:
    """Orthonormal basis ``(n, n-1)`` of the logit directions that change the policy."""
    u, _, _ = np.linalg.svd(np.eye(n) - 1.0 / n)
    return u[:, : n - 1]


def _field(problem: BanditProblem, size: int | None
           ) -> Callable[[FloatArray, FloatArray], FloatArray]:
    """The direction ``g(theta, theta_old)`` for 1-D logits (infinite or exact finite G)."""
    kern = _Kernel.of(problem)

    def field(theta: FloatArray, theta_old: FloatArray) -> FloatArray:
        if size is not None:
            return _expected_group(kern, theta, theta_old, size)[0]
        pi, pi_old = _softmax(theta[:, None]), _softmax(theta_old[:, None])
        return kern.direction(pi, pi_old, kern.advantages(pi_old))[:, 0]

    return field


@functools.lru_cache(maxsize=256)
def _solve_fixed_point(problem: BanditProblem, size: int | None) -> tuple[float, ...]:
    from scipy.optimize import root

    field = _field(problem, size)
    n = problem.n_arms
    basis = _gauge_basis(n)
    if size is not None:
        try:
            theta = np.array(_solve_fixed_point(problem, None))
        except AdvisorError:
            theta = problem.start_logits - problem.start_logits.mean()
    else:
        theta = problem.start_logits - problem.start_logits.mean()
    # Warm start: gradient flow with a step that halves whenever the field grows (stiff problems).
    step, norm = 0.5, float(np.linalg.norm(field(theta, theta)))
    with np.errstate(all="ignore"):
        for _ in range(4000):
            if not norm > 1e-10:
                break
            trial = theta + step * field(theta, theta)
            trial_norm = float(np.linalg.norm(field(trial, trial)))
            if not np.isfinite(trial_norm) or trial_norm > 2.0 * norm:
                step *= 0.5
                continue
            theta, norm = trial, trial_norm
        sol = root(lambda y: basis.T @ field(basis @ y, basis @ y), basis.T @ theta,
                   method="hybr", tol=1e-14)
    theta = basis @ sol.x
    pi = _softmax(theta[:, None])[:, 0]
    residual = float(np.linalg.norm(field(theta, theta)))
    if not (np.all(np.isfinite(theta)) and residual < 1e-8 and pi.min() > 1e-9):
        raise AdvisorError(
            "The bandit has no interior fixed point (the policy saturates; residual "
            f"{residual:.2g}, min pi {pi.min():.2g}). A KL term (kl='k3', beta > 0) creates one.")
    return tuple(float(x) for x in theta)


@functools.lru_cache(maxsize=256)
def _p_star(problem: BanditProblem) -> float:
    try:
        return fixed_point(problem)[1]
    except AdvisorError:
        return math.nan


def fixed_point(problem: BanditProblem, *, num_generations: int | None = None
                ) -> tuple[FloatArray, float]:
    """On-policy fixed point ``g(theta*, theta*) = 0`` and its mean reward ``p*``.

    The on-policy direction is the same for every surrogate, so ``p*`` depends only on the
    advantages, the KL term and ``G``. With ``num_generations=G`` the exact finite-G expected
    update is used: the plateau shifts by about ``-0.3/G`` (bandit-findings.md section 7).

    Args:
        problem: The bandit.
        num_generations: ``None`` for an infinite group, else ``G >= 2``.

    Returns:
        ``(theta*, p*)``: logits (gauge ``sum(theta*) = 0``), shape ``(n,)``, and ``pi* . r``.

    Raises:
        AdvisorError: If there is no interior fixed point (for example without KL).

    Example:
        >>> problem = BanditProblem.reference()
        >>> round(fixed_point(problem)[1], 4), round(fixed_point(problem, num_generations=4)[1], 3)
        (0.8536, 0.76)
    """
    if not isinstance(problem, BanditProblem):
        raise TypeError(f"`problem` must be a BanditProblem, got {type(problem).__name__}.")
    size = None if num_generations is None else check_int("num_generations", num_generations,
                                                          low=2)
    theta = np.array(_solve_fixed_point(problem, size))
    return theta, float(_softmax(theta[:, None])[:, 0] @ np.array(problem.rewards))


def jacobian_stiffness(problem: BanditProblem, *, num_generations: int | None = None,
                       step: float = 1e-6) -> tuple[float, float, float]:
    """Stiffness ``K`` of the slowest mode and its split ``K = K_c + K_o`` (the oracle).

    ``K_c = -dg/dtheta`` (current policy) and ``K_o = -dg/dtheta_old`` (sampling policy) at
    ``(theta*, theta*)``, by central differences in the ``n - 1`` policy directions, projected on
    the slowest eigenmode of ``-(J_c + J_o)`` (bandit-findings.md section 3).

    Args:
        problem: The bandit.
        num_generations: ``None`` for an infinite group, else ``G`` (exact expected update).
        step: Finite-difference step in logits.

    Returns:
        ``(K, K_c, K_o)`` per unit learning rate.

    Raises:
        AdvisorError: If there is no interior fixed point.

    Example:
        >>> [round(x, 3) for x in jacobian_stiffness(BanditProblem.reference())]
        [0.5, 1.25, -0.75]
    """
    from scipy.linalg import eig

    step = check_interval("step", step, low=0.0, high=1e-2, low_closed=False)
    theta, _ = fixed_point(problem, num_generations=num_generations)
    field = _field(problem, num_generations)
    basis = _gauge_basis(problem.n_arms)
    cols_c, cols_o = [], []
    for d in basis.T * step:
        cols_c.append(field(theta + d, theta) - field(theta - d, theta))
        cols_o.append(field(theta, theta + d) - field(theta, theta - d))
    stiff_c = -basis.T @ np.array(cols_c).T / (2 * step)
    stiff_o = -basis.T @ np.array(cols_o).T / (2 * step)
    w, left, right = eig(stiff_c + stiff_o, left=True, right=True)
    i = int(np.argmin(w.real))
    u, v = left[:, i].conj(), right[:, i]
    norm = u @ v
    return (float(w[i].real), float((u @ stiff_c @ v / norm).real),
            float((u @ stiff_o @ v / norm).real))

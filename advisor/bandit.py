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

Example:
    >>> problem = BanditProblem.reference()
    >>> run = simulate(problem, learning_rate=[0.1, 0.5], n_steps=2000)
    >>> run.reward_current.shape, round(run.p_star, 4)
    ((2, 2000), 0.8536)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.dynamics import Regime
from advisor.exceptions import AdvisorError
from advisor.exceptions import AdvisorWarning


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

FloatArray = npt.NDArray[np.float64]
# Exact finite-G enumeration visits every composition of G into n arms; above this count it is
# slower than Monte Carlo (2 arms never come close: G + 1 compositions).
_MAX_COMPOSITIONS = 2_000_000


def _as_float_tuple(name: str, values: Any, *, n: int | None = None) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"`{name}` must be a sequence of numbers, got {type(values).__name__}.")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a sequence of numbers, got {values!r}.") from None
    if arr.ndim != 1 or (n is not None and arr.size != n):
        want = f"a 1-D sequence of length {n}" if n is not None else "a 1-D sequence"
        raise ValueError(f"`{name}` must be {want}, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite, got {arr.tolist()!r}.")
    return tuple(float(x) for x in arr)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditProblem:
    """A softmax bandit standing in for one GRPO prompt.

    Attributes:
        rewards: Reward of each arm (completion), length ``n >= 2``, not all equal.
        ref_probs: Reference policy ``pi_ref`` (positive, sums to 1); ``None`` means uniform.
        beta: KL coefficient ``beta >= 0`` of TRL's k3 estimator (0 with ``kl="none"``).
        advantage: ``"std"`` for TRL's ``(r - mean) / (std + std_eps)``; ``"mean"`` for the
            mean-only advantages of Dr GRPO.
        surrogate: ``"ratio"`` (GRPO importance ratio, the default), ``"stale"`` (the whole update
            evaluated at the sampling policy: the pure-delay model) or ``"logprob"`` (no ratio).
        kl: ``"k3"`` (TRL's estimator, not importance-weighted) or ``"none"``.
        clip: PPO clip epsilon in (0, 1), or ``None`` for no clipping.
        std_eps: Constant added to the std (TRL uses 1e-4; 0 is the exact limit).
        init_logits: Starting logits ``theta_0``; ``None`` means ``log(ref_probs)``.

    Example:
        >>> problem = BanditProblem(rewards=[0.0, 1.0], beta=1.0)
        >>> problem.n_arms, problem.start_reward
        (2, 0.5)
    """

    rewards: Sequence[float]
    ref_probs: Sequence[float] | None = None
    beta: float = 1.0
    advantage: Literal["std", "mean"] = "std"
    surrogate: Literal["ratio", "stale", "logprob"] = "ratio"
    kl: Literal["k3", "none"] = "k3"
    clip: float | None = None
    std_eps: float = 0.0
    init_logits: Sequence[float] | None = None

    def __post_init__(self) -> None:
        setf = functools.partial(object.__setattr__, self)
        rewards = _as_float_tuple("rewards", self.rewards)
        if len(rewards) < 2 or max(rewards) == min(rewards):
            raise ValueError(
                f"`rewards` must have at least 2 arms with different rewards, got {rewards!r}."
            )
        n = len(rewards)
        setf("rewards", rewards)
        ref = (1.0 / n,) * n if self.ref_probs is None else _as_float_tuple(
            "ref_probs", self.ref_probs, n=n)
        if min(ref) <= 0.0 or abs(sum(ref) - 1.0) > 1e-9:
            raise ValueError(
                f"`ref_probs` must be positive and sum to 1, got {ref!r}. Normalise it first."
            )
        setf("ref_probs", ref)
        check_options("advantage", self.advantage, ("std", "mean"))
        check_options("surrogate", self.surrogate, ("ratio", "stale", "logprob"))
        check_options("kl", self.kl, ("k3", "none"))
        setf("beta", check_interval("beta", self.beta, low=0.0))
        if self.kl == "none" and self.beta != 0.0:
            raise ValueError(f"`beta` must be 0 when kl='none', got {self.beta!r}. "
                             "Pass beta=0.0, or kl='k3' to keep the KL term.")
        if self.clip is not None:
            setf("clip", check_interval("clip", self.clip, low=0.0, high=1.0,
                                        low_closed=False, high_closed=False))
            if self.surrogate == "logprob":
                raise ValueError("`clip` must be None with surrogate='logprob', got "
                                 f"{self.clip!r}: clipping acts on the importance ratio.")
        setf("std_eps", check_interval("std_eps", self.std_eps, low=0.0))
        if self.init_logits is not None:
            setf("init_logits", _as_float_tuple("init_logits", self.init_logits, n=n))

    @classmethod
    def reference(cls, **overrides: Any) -> BanditProblem:
        """The reference problem: 2 arms, ``r = (0, 1)``, uniform ``pi_ref``, ``beta = 1``.

        Its fixed point is ``p* = (2 + sqrt 2)/4`` with ``K = 0.5`` (``K_c = 1.25``,
        ``K_o = -0.75``), bandit-findings.md section 2-3.

        Example:
            >>> BanditProblem.reference(advantage="mean").advantage
            'mean'
        """
        return cls(**{"rewards": (0.0, 1.0), "beta": 1.0, **overrides})

    @classmethod
    def hard_prompt(cls, **overrides: Any) -> BanditProblem:
        """A hard prompt: reference success 0.05, ``beta = 3`` (``p* < 1/2``, ``K_o > 0``).

        Example:
            >>> round(BanditProblem.hard_prompt().start_reward, 12)
            0.05
        """
        return cls(**{"rewards": (0.0, 1.0), "ref_probs": (0.95, 0.05), "beta": 3.0,
                      **overrides})

    @classmethod
    def five_arm(cls, **overrides: Any) -> BanditProblem:
        """Five arms with real rewards ``(0, 0.2, 0.5, 0.7, 1)``, uniform ``pi_ref``, ``beta = 1``.

        Example:
            >>> BanditProblem.five_arm().n_arms
            5
        """
        return cls(**{"rewards": (0.0, 0.2, 0.5, 0.7, 1.0), "beta": 1.0, **overrides})

    @property
    def n_arms(self) -> int:
        """Number of arms ``n``."""
        return len(self.rewards)

    @property
    def start_logits(self) -> FloatArray:
        """Starting logits ``theta_0``, shape ``(n,)``."""
        if self.init_logits is not None:
            return np.array(self.init_logits)
        return np.log(np.array(self.ref_probs))

    @property
    def start_reward(self) -> float:
        """Mean reward ``p_0`` of the starting policy."""
        pi = _softmax(self.start_logits[:, None])[:, 0]
        return float(pi @ np.array(self.rewards))


@dataclasses.dataclass(frozen=True, kw_only=True)
class BanditRun:
    """Trajectories of a batch of simulated configurations (one row per configuration).

    Attributes:
        reward_used: Mean reward of the completions used at step ``k`` (TRL's logged ``reward``):
            ``pi_old . r`` for an infinite group, the sampled group mean for finite ``G``.
            Shape ``(n_configs, n_steps)``; NaN from the step a configuration diverged.
        reward_current: Mean reward ``pi_k . r`` of the current policy at step ``k`` (before the
            update of step ``k``, so column 0 is ``p_0``). Same shape and NaN rule.
        diverged: True where the run produced non-finite values; it was then frozen.
        divergence_step: First non-finite step, or -1.
        final_logits: Logits after the last update, shape ``(n_configs, n)``; NaN if diverged.
        p_star: Fixed point ``p*`` of the infinite-G update (NaN if there is none). For finite G
            the plateau is ``fixed_point(problem, num_generations=G)``.
        start_reward: ``p_0``.
        learning_rate, momentum, refresh_interval: Per-configuration values, shape
            ``(n_configs,)``.
        refresh_scheme, optimizer, num_generations, seed: As passed to :func:`simulate`.
        problem: The simulated problem.

    Example:
        >>> run = simulate(BanditProblem.reference(), learning_rate=0.2, n_steps=50)
        >>> run.n_configs, run.n_steps, bool(run.diverged[0])
        (1, 50, False)
    """

    reward_used: FloatArray
    reward_current: FloatArray
    diverged: npt.NDArray[np.bool_]
    divergence_step: npt.NDArray[np.int64]
    final_logits: FloatArray
    p_star: float
    start_reward: float
    learning_rate: FloatArray
    momentum: FloatArray
    refresh_interval: npt.NDArray[np.int64]
    refresh_scheme: str
    optimizer: str
    num_generations: int | None
    seed: int | None
    problem: BanditProblem

    @property
    def n_configs(self) -> int:
        """Number of configurations."""
        return int(self.reward_current.shape[0])

    @property
    def n_steps(self) -> int:
        """Number of optimizer steps."""
        return int(self.reward_current.shape[1])

    def regimes(self) -> npt.NDArray[np.object_]:
        """Regime of each configuration by :func:`classify` (bandit-findings.md section 5).

        Example:
            >>> run = simulate(BanditProblem.reference(), learning_rate=0.05, n_steps=3000)
            >>> run.regimes()[0].value
            'monotone'
        """
        out = classify(self.reward_current, self.p_star, self.start_reward)
        assert isinstance(out, np.ndarray)
        return out


# ------------------------------------------------------------------------------------------------
# kernels: arm-major arrays (n, B)
# ------------------------------------------------------------------------------------------------

def _softmax(theta: FloatArray) -> FloatArray:
    z = np.exp(theta - theta.max(axis=0))
    return z / z.sum(axis=0)


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """The problem's constants as column vectors, so that they broadcast against ``(n, B)``."""

    r: FloatArray
    ref: FloatArray
    beta: float
    std: bool
    surrogate: str
    clip: float | None
    eps: float

    @classmethod
    def of(cls, problem: BanditProblem) -> _Kernel:
        return cls(r=np.array(problem.rewards)[:, None], ref=np.array(problem.ref_probs)[:, None],
                   beta=problem.beta if problem.kl == "k3" else 0.0,
                   std=problem.advantage == "std", surrogate=problem.surrogate,
                   clip=problem.clip, eps=problem.std_eps)

    def advantages(self, pi_old: FloatArray) -> FloatArray:
        """Infinite-group advantages ``A`` of every arm under ``pi_old``."""
        a = self.r - (self.r * pi_old).sum(axis=0)
        if self.std:
            a = a / (np.sqrt((pi_old * a * a).sum(axis=0)) + self.eps)
        return a

    def clipped(self, adv: FloatArray, pi: FloatArray, pi_old: FloatArray) -> FloatArray:
        if self.clip is None or self.surrogate != "ratio":
            return adv
        rho = pi / pi_old
        off = ((adv > 0) & (rho > 1 + self.clip)) | ((adv < 0) & (rho < 1 - self.clip))
        return np.where(off, 0.0, adv)

    def direction(self, pi: FloatArray, pi_old: FloatArray, adv: FloatArray) -> FloatArray:
        """Expected ascent direction ``g(theta, theta_old)`` for an infinite group."""
        if self.surrogate == "stale":
            pi = pi_old
        if self.surrogate == "logprob":
            w = pi_old * adv
        else:
            w = pi * self.clipped(adv, pi, pi_old)
        g = w - pi * w.sum(axis=0)
        if self.beta:
            c = pi_old * (1.0 - self.ref / pi)
            g -= self.beta * (c - pi * c.sum(axis=0))
        return g

    def group_advantages(self, counts: FloatArray, size: int) -> FloatArray:
        """Per-arm advantages of a sampled group (TRL: unbiased std, ``+ std_eps``)."""
        mean = (counts * self.r).sum(axis=0) / size
        a = self.r - mean
        if self.std:
            sd = np.sqrt((counts * a * a).sum(axis=0) / (size - 1))
            # A degenerate group (all rewards equal) has r_i - mean = 0 for every sampled arm, so
            # its advantages are 0 (TRL's 0 / (0 + 1e-4)); unsampled arms carry no weight.
            a = np.divide(a, sd + self.eps, out=np.zeros_like(a), where=(sd + self.eps) > 0)
        return a

    def group_direction(self, pi: FloatArray, pi_old: FloatArray, counts: FloatArray,
                        adv: FloatArray, size: int) -> FloatArray:
        """Sampled-group ascent direction ``(1/G) sum_i rho_i A_i (e_{a_i} - pi)`` minus k3."""
        if self.surrogate == "stale":
            pi = pi_old
        if self.surrogate == "logprob":
            coef = counts * adv
        else:
            coef = counts * (pi / pi_old) * self.clipped(adv, pi, pi_old)
        g = coef - pi * coef.sum(axis=0)
        if self.beta:
            c = counts * (1.0 - self.ref / pi)
            g -= self.beta * (c - pi * c.sum(axis=0))
        return g / size


def _sample_counts(rng: np.random.Generator, pi_old: FloatArray, size: int) -> FloatArray:
    """Arm counts of one group of ``size`` draws per column (sequential conditional binomials)."""
    n, b = pi_old.shape
    counts = np.empty((n, b))
    left = np.full(b, size, dtype=np.int64)
    mass = np.ones(b)
    for a in range(n - 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            q = pi_old[a] / mass
        # Rounding can push q a hair outside [0, 1] and frozen (diverged) columns may be NaN.
        q = np.where(np.isfinite(q), np.clip(q, 0.0, 1.0), 0.0)
        c = rng.binomial(left, q)
        counts[a] = c
        left -= c
        mass = mass - pi_old[a]
    counts[n - 1] = left
    return counts


# ------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------

def _config_array(name: str, value: Any) -> FloatArray:
    """A scalar or 1-D array-like of real numbers as a 1-D float array (bools rejected)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"`{name}` must be a real number or a 1-D array of them, "
                        f"got {type(value).__name__} {value!r}.")
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"`{name}` must be a real number or a 1-D array of them, got {value!r}.")
    if arr.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or 1-D, got shape {arr.shape}. "
                         "Flatten a grid with .ravel() first.")
    return arr.astype(np.float64).reshape(-1)


def _check_all(name: str, arr: FloatArray, ok: npt.NDArray[np.bool_], constraint: str,
               hint: str = "") -> None:
    if not np.all(ok):
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"`{name}` must be {constraint}, got {float(arr[i])!r} at index {i}. "
                         f"{hint}"
                         .strip())


def _configs(learning_rate: Any, momentum: Any, refresh_interval: Any, scheme: str
             ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    eta = _config_array("learning_rate", learning_rate)
    mu = _config_array("momentum", momentum)
    lag = _config_array("refresh_interval", refresh_interval)
    with np.errstate(invalid="ignore"):
        _check_all("learning_rate", eta, np.isfinite(eta) & (eta > 0), "finite and > 0")
        _check_all("momentum", mu, np.isfinite(mu) & (mu >= 0) & (mu < 1), "in [0, 1)")
        low = 1 if scheme == "piecewise" else 0
        integral = np.isfinite(lag) & (lag == np.round(lag))
        _check_all("refresh_interval", lag, integral & (lag >= low),
                   f"an integer >= {low} for refresh_scheme={scheme!r}",
                   "K_ref = 1 (piecewise) or lag d = 0 (sliding) is on-policy.")
    try:
        eta, mu, lag = np.broadcast_arrays(eta, mu, lag)
    except ValueError:
        raise ValueError("`learning_rate`, `momentum` and `refresh_interval` must broadcast to "
                         f"one length, got lengths {eta.size}, {mu.size}, {lag.size}.") from None
    return eta.copy(), mu.copy(), lag.astype(np.int64)


def simulate(
    problem: BanditProblem,
    *,
    learning_rate: float | Sequence[float] | FloatArray,
    momentum: float | Sequence[float] | FloatArray = 0.0,
    refresh_interval: int | Sequence[int] | npt.NDArray[np.int64] = 1,
    refresh_scheme: Literal["piecewise", "sliding"] = "piecewise",
    optimizer: Literal["sgd", "adam"] = "sgd",
    num_generations: int | None = None,
    n_steps: int,
    seed: int | None = None,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
) -> BanditRun:
    """Simulate GRPO on the bandit for a batch of configurations in lock step.

    Each configuration is ``(eta, mu, K_ref or d)``; the three broadcast to ``n_configs``. Heavy
    ball: ``theta_{k+1} = theta_k + eta*g_k + mu*(theta_k - theta_{k-1})``; Adam: the usual
    bias-corrected update with ``adam_betas`` (``momentum`` must then be 0). The sampling policy is
    ``theta_old = theta_k`` refreshed when ``k % K_ref == 0`` (``"piecewise"``, as TRL does) or
    ``theta_old = theta_{k-d}`` with ``d = refresh_interval`` (``"sliding"``; ``theta_j = theta_0``
    for ``j < 0``). A configuration that produces non-finite values is marked diverged and frozen;
    the others go on.

    Args:
        problem: The bandit.
        learning_rate: ``eta > 0``, scalar or 1-D.
        momentum: Heavy-ball ``mu`` in [0, 1), scalar or 1-D (SGD only).
        refresh_interval: ``K_ref >= 1`` (piecewise) or lag ``d >= 0`` (sliding), scalar or 1-D.
        refresh_scheme: ``"piecewise"`` or ``"sliding"``.
        optimizer: ``"sgd"`` (heavy ball) or ``"adam"``.
        num_generations: Group size ``G >= 2``; ``None`` uses the exact expected update
            (infinite group). A finite group is drawn from ``pi_old`` at each refresh and reused
            until the next (every step for ``"sliding"``).
        n_steps: Number of optimizer steps.
        seed: Seed of the group sampler (finite G only).
        adam_betas: Adam's ``(beta1, beta2)``, each in [0, 1).
        adam_eps: Adam's epsilon.

    Returns:
        The trajectories, see :class:`BanditRun`.

    Raises:
        TypeError: For non-numeric arguments.
        ValueError: For out-of-range values, see each argument.

    Example:
        >>> run = simulate(BanditProblem.reference(), learning_rate=0.3, momentum=0.8,
        ...                refresh_interval=[1, 4], n_steps=3000)
        >>> [round(float(p), 3) for p in run.reward_current[:, -1]]
        [0.854, 0.854]
    """
    if not isinstance(problem, BanditProblem):
        raise TypeError(f"`problem` must be a BanditProblem, got {type(problem).__name__}.")
    check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
    check_options("optimizer", optimizer, ("sgd", "adam"))
    eta, mu, lag = _configs(learning_rate, momentum, refresh_interval, refresh_scheme)
    n_steps = check_int("n_steps", n_steps, low=1)
    if num_generations is not None:
        num_generations = check_int("num_generations", num_generations, low=2,
                                    hint="Use None for the infinite-group expected update.")
    if seed is not None:
        seed = check_int("seed", seed, low=0)
    betas = (check_interval("adam_betas[0]", adam_betas[0], low=0.0, high=1.0, high_closed=False),
             check_interval("adam_betas[1]", adam_betas[1], low=0.0, high=1.0, high_closed=False))
    adam_eps = check_interval("adam_eps", adam_eps, low=0.0, low_closed=False)
    if optimizer == "adam" and np.any(mu != 0):
        raise ValueError(f"`momentum` must be 0 with optimizer='adam', got {float(mu.max())!r}. "
                         "Adam's first-moment EMA is set by `adam_betas`, not by heavy-ball "
                         "momentum.")
    theta0 = problem.start_logits
    pi0 = np.repeat(_softmax(theta0[:, None]), eta.size, axis=1)
    cur, used, first_bad, final = _run(
        _Kernel.of(problem), theta0, _Optimizer(theta0, eta, mu, optimizer, betas, adam_eps),
        _Sampler(pi0, lag, refresh_scheme), num_generations, n_steps,
        np.random.default_rng(seed))
    diverged = first_bad < n_steps
    if diverged.any():
        after = np.arange(n_steps)[None, :] >= first_bad[:, None]
        cur[after] = np.nan
        used[after] = np.nan
        final[diverged] = np.nan
    return BanditRun(
        reward_used=used, reward_current=cur, diverged=diverged,
        divergence_step=np.where(diverged, first_bad, -1), final_logits=final,
        p_star=_p_star(problem), start_reward=problem.start_reward, learning_rate=eta,
        momentum=mu, refresh_interval=lag, refresh_scheme=refresh_scheme, optimizer=optimizer,
        num_generations=num_generations, seed=seed, problem=problem)


class _Sampler:
    """The sampling policy ``pi_old`` of every configuration, step by step."""

    def __init__(self, pi0: FloatArray, lag: npt.NDArray[np.int64], scheme: str) -> None:
        self.scheme, self.lag = scheme, lag
        self.uniform = bool(np.all(lag == lag[0]))
        self.period = int(lag[0])
        self.on_policy = self.uniform and self.period == (1 if scheme == "piecewise" else 0)
        self.pi_old = pi0
        if scheme == "sliding" and not self.on_policy:
            self.depth = int(lag.max()) + 1
            self.history = np.repeat(pi0[None], self.depth, axis=0)  # theta_{j<0} = theta_0

    def step(self, k: int, pi: FloatArray) -> npt.NDArray[np.bool_] | bool:
        """Update ``pi_old`` for step ``k``; return which columns were refreshed."""
        if self.on_policy:
            self.pi_old = pi
            return True
        if self.scheme == "piecewise":
            if self.uniform:
                if k % self.period:
                    return False
                self.pi_old = pi
                return True
            fresh = (k % self.lag) == 0
            if fresh.any():
                self.pi_old = np.where(fresh, pi, self.pi_old)
            return fresh
        self.history[k % self.depth] = pi
        if self.uniform:
            self.pi_old = self.history[(k - self.period) % self.depth]
        else:
            idx = ((k - self.lag) % self.depth)[None, None, :]
            self.pi_old = np.take_along_axis(self.history, idx, axis=0)[0]
        return True

    def reset(self, cols: npt.NDArray[np.bool_], pi0: FloatArray) -> None:
        if self.scheme == "sliding" and not self.on_policy:
            self.history[:, :, cols] = pi0


class _Optimizer:
    """Heavy ball or Adam over the ``(n, B)`` logits, with per-column rates that can be frozen."""

    def __init__(self, theta0: FloatArray, eta: FloatArray, mu: FloatArray, optimizer: str,
                 betas: tuple[float, float], eps: float) -> None:
        self.eta, self.mu = eta.copy(), mu.copy()  # zeroed per column when a run diverges
        self.adam, self.betas, self.eps = optimizer == "adam", betas, eps
        self.heavy = not self.adam and bool(np.any(mu))
        self.theta = np.repeat(theta0[:, None], eta.size, axis=1)
        self.prev = self.theta.copy()
        self.m, self.v = np.zeros_like(self.theta), np.zeros_like(self.theta)

    def update(self, g: FloatArray, k: int) -> None:
        th = self.theta
        if self.adam:
            b1, b2 = self.betas
            self.m = b1 * self.m + (1 - b1) * g
            self.v = b2 * self.v + (1 - b2) * g * g
            m_hat, v_hat = self.m / (1 - b1 ** (k + 1)), self.v / (1 - b2 ** (k + 1))
            self.theta = th + self.eta * m_hat / (np.sqrt(v_hat) + self.eps)
        elif self.heavy:
            self.theta, self.prev = th + self.eta * g + self.mu * (th - self.prev), th
        else:
            self.theta = th + self.eta * g

    def freeze(self, cols: npt.NDArray[np.bool_], theta0: FloatArray) -> None:
        """Park diverged columns at ``theta_0`` with zero step size from now on."""
        self.eta[cols], self.mu[cols] = 0.0, 0.0
        for arr in (self.theta, self.prev, self.m, self.v):
            arr[:, cols] = 0.0
        self.theta[:, cols] = theta0[:, None]
        self.prev[:, cols] = theta0[:, None]


def _run(kern: _Kernel, theta0: FloatArray, opt: _Optimizer, sampler: _Sampler,
         size: int | None, n_steps: int, rng: np.random.Generator
         ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], FloatArray]:
    """The lock-step loop. Returns reward_current, reward_used (n_configs, n_steps), the first
    non-finite step per configuration (n_steps if none) and the final logits (n_configs, n)."""
    b = opt.eta.size
    cur, used = np.empty((b, n_steps)), np.empty((b, n_steps))
    # Rows are written step-major into small blocks and transposed block-wise into the
    # (n_configs, n_steps) outputs: a whole-array transpose copy costs as much as the simulation.
    block = min(n_steps, 256)
    cur_blk, used_blk = np.empty((block, b)), np.empty((block, b))
    first_bad = np.full(b, n_steps, dtype=np.int64)
    frozen = np.zeros(b, dtype=bool)
    r = kern.r[:, 0]
    adv = counts = used_row = sampler.pi_old  # placeholders: every column refreshes at k = 0
    with np.errstate(all="ignore"):
        for k in range(n_steps):
            pi = _softmax(opt.theta)
            row = k % block
            cur_blk[row] = r @ pi
            fresh = sampler.step(k, pi)
            pi_old = sampler.pi_old
            if size is None:
                if np.any(fresh):
                    adv, used_row = kern.advantages(pi_old), r @ pi_old
                g = kern.direction(pi, pi_old, adv)
            else:
                if np.any(fresh):
                    counts = np.where(fresh, _sample_counts(rng, pi_old, size), counts)
                    adv, used_row = kern.group_advantages(counts, size), r @ counts / size
                g = kern.group_direction(pi, pi_old, counts, adv, size)
            used_blk[row] = used_row
            if row == block - 1 or k == n_steps - 1:
                cur[:, k - row:k + 1] = cur_blk[:row + 1].T
                used[:, k - row:k + 1] = used_blk[:row + 1].T
            if frozen.any():
                g[:, frozen] = 0.0
            if not math.isfinite(float(cur_blk[row].sum() + g.sum())):
                bad = ~(np.isfinite(cur_blk[row]) & np.isfinite(g).all(axis=0))
                first_bad[bad & ~frozen] = k
                frozen |= bad
                g[:, bad] = 0.0
                opt.freeze(bad, theta0)
                sampler.reset(bad, _softmax(theta0[:, None]))
            opt.update(g, k)
    return cur, used, first_bad, np.ascontiguousarray(opt.theta.T)


# ------------------------------------------------------------------------------------------------
# fixed point, stiffness, exact finite-G expectation
# ------------------------------------------------------------------------------------------------

def _gauge_basis(n: int) -> FloatArray:
    """Orthonormal basis ``(n, n-1)`` of the logit directions that change the policy."""
    u, _, _ = np.linalg.svd(np.eye(n) - 1.0 / n)
    return u[:, : n - 1]


@functools.lru_cache(maxsize=32)
def _compositions(n: int, size: int) -> FloatArray:
    """Every arm-count vector of a group of ``size`` draws from ``n`` arms, shape ``(n, M)``."""
    total = math.comb(size + n - 1, n - 1)
    if total > _MAX_COMPOSITIONS:
        raise ValueError(f"`num_generations` must give at most {_MAX_COMPOSITIONS} group "
                         f"compositions for exact enumeration, got {total} (n={n}, G={size}). "
                         "Average simulate(..., num_generations=G) runs instead.")
    if n == 2:
        c = np.arange(size + 1, dtype=np.float64)
        return np.stack([size - c, c])
    bars = np.array(list(itertools.combinations(range(size + n - 1), n - 1)))
    edges = np.concatenate([np.full((total, 1), -1), bars, np.full((total, 1), size + n - 1)], 1)
    return (np.diff(edges, axis=1) - 1).T.astype(np.float64)


def _logits(name: str, value: Any, n: int) -> FloatArray:
    return np.array(_as_float_tuple(name, value, n=n))


def _expected_group(kern: _Kernel, theta: FloatArray, theta_old: FloatArray, size: int
                    ) -> tuple[FloatArray, FloatArray]:
    from scipy.special import gammaln
    from scipy.special import xlogy

    pi, pi_old = _softmax(theta[:, None]), _softmax(theta_old[:, None])
    counts = _compositions(theta.size, size)
    logw = gammaln(size + 1) - gammaln(counts + 1).sum(0) + xlogy(counts, pi_old).sum(0)
    w = np.exp(logw)
    with np.errstate(all="ignore"):
        g = kern.group_direction(pi, pi_old, counts, kern.group_advantages(counts, size), size)
    g = np.where(w > 0, g, 0.0)  # impossible groups (probability 0) carry no weight
    mean = g @ w
    dev = g - mean[:, None]
    return mean, (dev * w) @ dev.T


def expected_update_finite_g(
    problem: BanditProblem,
    logits: Sequence[float] | FloatArray,
    old_logits: Sequence[float] | FloatArray | None = None,
    *,
    num_generations: int,
) -> tuple[FloatArray, FloatArray]:
    """Exact mean and covariance of the sampled-group ascent direction over all groups.

    Enumerates every composition of a group of ``G`` completions drawn from ``pi_old``
    (``c ~ Binom(G, p_old)`` for 2 arms; multinomial in general) with TRL's normalisation, so the
    finite-G plateau shift and the gradient noise are exact (bandit-findings.md section 7).

    Args:
        problem: The bandit.
        logits: Current logits ``theta``, shape ``(n,)``.
        old_logits: Sampling logits ``theta_old``; ``None`` means on-policy (``theta``).
        num_generations: Group size ``G >= 2``.

    Returns:
        ``(mean, covariance)`` of the direction, shapes ``(n,)`` and ``(n, n)``.

    Raises:
        ValueError: For bad logits or ``G``, or too many compositions to enumerate.

    Example:
        >>> problem = BanditProblem.reference()
        >>> mean, cov = expected_update_finite_g(problem, [0.0, 0.0], num_generations=4)
        >>> [round(float(x), 4) for x in mean]
        [-0.3499, 0.3499]
    """
    n = problem.n_arms
    theta = _logits("logits", logits, n)
    theta_old = theta if old_logits is None else _logits("old_logits", old_logits, n)
    size = check_int("num_generations", num_generations, low=2)
    return _expected_group(_Kernel.of(problem), theta, theta_old, size)


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


# ------------------------------------------------------------------------------------------------
# regimes and thresholds
# ------------------------------------------------------------------------------------------------

_REGIMES = np.array([Regime.MONOTONE, Regime.OVERSHOOT, Regime.OSCILLATORY, Regime.DIVERGENT],
                    dtype=object)


def _regime_codes(p: FloatArray, p_star: FloatArray, p0: FloatArray, dead_zone: float,
                  tail_fraction: float, tolerance: float) -> npt.NDArray[np.int64]:
    n = p.shape[1]
    scale = np.abs(p_star - p0)[:, None]
    dev = p - p_star[:, None]
    finite = np.isfinite(dev).all(axis=1)
    dev = np.where(np.isfinite(dev), dev, 0.0)
    size = np.abs(dev)
    tail = size[:, int(n * (1 - tail_fraction)):].max(axis=1)
    third, last = size[:, n // 2: 3 * n // 4].max(axis=1), size[:, 3 * n // 4:].max(axis=1)
    # Not decaying: the last quarter's envelope is not below the third quarter's (1e-9 guards
    # runs already converged to rounding level).
    stuck = (last >= 0.98 * third) & (last > 1e-9 * scale[:, 0])
    diverged = ~finite | (tail > tolerance * scale[:, 0]) | stuck
    # Sign of p - p* outside the dead zone, with the start as the first signed point;
    # forward-fill the dead zone with the last sign, then count sign flips.
    sign = np.where(size > dead_zone * scale, np.sign(dev), 0.0)
    sign = np.concatenate([np.sign(p0 - p_star)[:, None], sign], axis=1)
    idx = np.where(sign != 0, np.arange(n + 1), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(sign, idx, axis=1)
    flips = (filled[:, 1:] * filled[:, :-1] < 0).sum(axis=1)
    return np.where(diverged, 3, np.minimum(flips, 2))


def _codes(p: FloatArray, p_star: FloatArray, p0: FloatArray, dead_zone: float = 0.01,
           tail_fraction: float = 0.1, tolerance: float = 0.01) -> npt.NDArray[np.int64]:
    """Regime codes 0..3 (index into ``_REGIMES``); chunks bound the temporaries' memory."""
    return np.concatenate([
        _regime_codes(p[i:i + 256], p_star[i:i + 256], p0[i:i + 256], dead_zone, tail_fraction,
                      tolerance)
        for i in range(0, p.shape[0], 256)])


def classify(
    reward_current: Sequence[float] | FloatArray,
    p_star: float | FloatArray,
    p0: float | FloatArray | None = None,
    *,
    dead_zone: float = 0.01,
    tail_fraction: float = 0.1,
    tolerance: float = 0.01,
) -> Regime | npt.NDArray[np.object_]:
    """Regime of each trajectory by the rules of bandit-findings.md section 5.

    With ``Delta = |p* - p0|``: **divergent** if non-finite, or ``max|p - p*|`` over the last
    ``tail_fraction`` of steps exceeds ``tolerance*Delta``, or the envelope does not decay (last
    quarter's max >= 0.98 x third quarter's); else **oscillatory** with >= 2 sign changes of
    ``p - p*`` outside the dead zone ``dead_zone*Delta`` (the start counts as a signed point),
    **overshoot** with exactly 1, **monotone** otherwise.

    Args:
        reward_current: ``p`` per step, shape ``(n_steps,)`` or ``(n_configs, n_steps)``,
            ``n_steps >= 8``.
        p_star: Fixed point ``p*``, scalar or per configuration.
        p0: Starting reward, scalar or per configuration; ``None`` takes the first column.
        dead_zone: Dead zone as a fraction of ``Delta``.
        tail_fraction: Fraction of steps in the convergence check.
        tolerance: Convergence tolerance as a fraction of ``Delta``.

    Returns:
        A :class:`~advisor.dynamics.Regime` for a 1-D input, else an object array of them,
        shape ``(n_configs,)``.

    Raises:
        ValueError: For a wrong shape, non-finite ``p*`` or ``p0``, or ``p0 == p*``.

    Example:
        >>> import numpy as np
        >>> t = np.arange(400)
        >>> classify(0.8 - 0.3 * 0.9 ** t, 0.8).value
        'monotone'
        >>> classify(0.8 - 0.3 * (-0.9) ** t, 0.8).value
        'oscillatory'
    """
    p = np.asarray(reward_current, dtype=np.float64)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.ndim != 2 or p.shape[1] < 8:
        raise ValueError("`reward_current` must have shape (n_steps,) or (n_configs, n_steps) "
                         f"with n_steps >= 8, got shape {np.shape(reward_current)}.")
    start = p[:, 0] if p0 is None else np.asarray(p0, dtype=np.float64)
    target = np.asarray(p_star, dtype=np.float64)
    try:
        target, start = (np.broadcast_to(x, p.shape[:1]).astype(np.float64)
                         for x in (target, start))
    except ValueError:
        raise ValueError("`p_star` and `p0` must be scalars or have length n_configs = "
                         f"{p.shape[0]}.") from None
    for name, x in (("p_star", target), ("p0", start)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"`{name}` must be finite, got {x.tolist()!r}.")
    if np.any(target == start):
        raise ValueError("`p0` must differ from `p_star`: the regime is measured relative to "
                         "|p* - p0|.")
    for name, x, hi in (("dead_zone", dead_zone, 1.0), ("tail_fraction", tail_fraction, 0.5),
                        ("tolerance", tolerance, 1.0)):
        check_interval(name, x, low=0.0, high=hi, low_closed=False)
    out = _REGIMES[_codes(p, target, start, dead_zone, tail_fraction, tolerance)]
    return out[0] if single else out


def _default_lr_range(problem: BanditProblem, mu: FloatArray, n_steps: int, optimizer: str
                      ) -> tuple[FloatArray, FloatArray]:
    if optimizer == "adam":
        return np.full(mu.shape, 1e-4), np.full(mu.shape, 10.0)
    stiffness = jacobian_stiffness(problem)[0]
    # Low end: relaxed by e^-30 within n_steps (slower runs would read as "not converged");
    # high end: 4x the on-policy discrete bound eta*K = 2(1 + mu).
    return 30 * (1 - mu) / (stiffness * n_steps), 8 * (1 + mu) / stiffness


def empirical_threshold(
    problem: BanditProblem,
    *,
    momentum: float | Sequence[float] | FloatArray = 0.0,
    refresh_interval: int | Sequence[int] | npt.NDArray[np.int64] = 1,
    refresh_scheme: Literal["piecewise", "sliding"] = "piecewise",
    optimizer: Literal["sgd", "adam"] = "sgd",
    n_steps: int = 4000,
    lr_range: tuple[float, float] | None = None,
    n_grid: int | None = None,
    n_bisect: int = 10,
) -> FloatArray:
    """Smallest learning rate whose run is classified divergent (ground truth for stability).

    For each ``(mu, K_ref or d)`` configuration a log-spaced grid of ``n_grid`` learning rates is
    simulated and classified; the first divergent grid point is refined by ``n_bisect`` geometric
    bisections, all configurations at once. Stable islands above the first divergent rate are
    ignored.

    Args:
        problem: The bandit (must have a fixed point).
        momentum: Heavy-ball ``mu``, scalar or 1-D (broadcast with ``refresh_interval``).
        refresh_interval: ``K_ref`` (piecewise) or ``d`` (sliding), scalar or 1-D.
        refresh_scheme: ``"piecewise"`` or ``"sliding"``.
        optimizer: ``"sgd"`` or ``"adam"``.
        n_steps: Steps per run.
        lr_range: ``(low, high)`` of the scan. ``None``: for SGD per configuration
            ``[30(1 - mu)/(K n_steps), 8(1 + mu)/K]``; for Adam ``[1e-4, 10]``.
        n_grid: Grid points (>= 2); ``None`` gives 20 per decade of the range. The divergent
            region of the ratio surrogate has stable islands, so a coarse grid can miss its
            first divergent rate (20 per decade reproduces bandit-findings.md section 5).
        n_bisect: Bisection steps; the bracket ratio shrinks to ``ratio**(1/2**n_bisect)``.

    Returns:
        ``eta*`` per configuration, shape ``(n_configs,)``: the smallest learning rate found
        divergent, ``inf`` if none in range.

    Warns:
        AdvisorWarning: If the lowest rate of the range already diverges (``eta*`` is then an
            upper bound).

    Example:
        >>> eta = empirical_threshold(BanditProblem.reference(surrogate="stale"),
        ...                           refresh_interval=[2, 4], n_steps=2000, n_bisect=6)
        >>> [round(float(x), 1) for x in eta * 0.5 * np.array([2, 4])]  # eta*K*K_ref ~ 2
        [2.0, 2.0]
    """
    check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
    check_options("optimizer", optimizer, ("sgd", "adam"))
    _, mu, lag = _configs(1.0, momentum, refresh_interval, refresh_scheme)
    n_steps = check_int("n_steps", n_steps, low=8)
    n_bisect = check_int("n_bisect", n_bisect, low=0)
    if lr_range is None:
        low, high = _default_lr_range(problem, mu, n_steps, optimizer)
    else:
        lo_ = check_interval("lr_range[0]", lr_range[0], low=0.0, low_closed=False)
        hi_ = check_interval("lr_range[1]", lr_range[1], low=lo_, low_closed=False)
        low, high = np.full(mu.shape, lo_), np.full(mu.shape, hi_)
    if n_grid is None:
        n_grid = max(2, math.ceil(20 * float(np.log10(high / low).max())) + 1)
    n_grid = check_int("n_grid", n_grid, low=2)
    p_star = fixed_point(problem)[1]

    def divergent(eta: FloatArray, mu_: FloatArray, lag_: npt.NDArray[np.int64]
                  ) -> npt.NDArray[np.bool_]:
        out = np.empty(eta.size, dtype=bool)
        for i in range(0, eta.size, 1024):  # bounded memory: 1024 x n_steps x 2 floats per call
            s = slice(i, i + 1024)
            run = simulate(problem, learning_rate=eta[s], momentum=mu_[s],
                           refresh_interval=lag_[s], refresh_scheme=refresh_scheme,
                           optimizer=optimizer, n_steps=n_steps)
            p = run.reward_current
            out[s] = _codes(p, np.full(len(p), p_star), np.full(len(p), run.start_reward)) == 3
        return out

    frac = np.linspace(0.0, 1.0, n_grid)
    grid = np.exp(np.log(low)[:, None] + frac * np.log(high / low)[:, None])  # (n_configs, n_grid)
    div = divergent(grid.ravel(), np.repeat(mu, n_grid), np.repeat(lag, n_grid))
    div = div.reshape(grid.shape)
    found = div.any(axis=1)
    first = np.argmax(div, axis=1)
    hi = np.where(found, grid[np.arange(mu.size), first], np.inf)
    todo = found & (first > 0)
    if np.any(found & (first == 0)):
        warnings.warn("The lowest learning rate of the scan already diverges for some "
                      "configurations; their eta* is only an upper bound. Lower `lr_range`.",
                      AdvisorWarning, stacklevel=2)
    if todo.any():
        a = grid[todo, first[todo] - 1]
        b = hi[todo]
        for _ in range(n_bisect):
            mid = np.sqrt(a * b)
            d = divergent(mid, mu[todo], lag[todo])
            a, b = np.where(d, a, mid), np.where(d, mid, b)
        hi[todo] = b
    return hi

"""Group size G (``num_generations``): noise, plateau shift and degenerate groups.

GRPO normalises rewards within each group of G completions, so G is not a pure noise
temperature (bandit-findings.md section 7, theory.md section 4):

* a group whose rewards are all equal has zero advantage; for a binary reward with success rate
  p this happens with probability ``p^G + (1 - p)^G``;
* the plateau moves down by about ``0.3 / G`` (p* = 0.760 / 0.808 / 0.833 / 0.849 at
  G = 4 / 8 / 16 / 64 against 0.854 at G = infinity on the 2-arm reference);
* the stationary fluctuation of the reward is ``Var p ~ c / G`` only to within 1.5x; discounting
  the degenerate groups, ``c (1 - p^G - (1-p)^G) / G``, brings it within about 25%; for a known
  2-arm bandit the exact finite-G linear-noise (Lyapunov) value is within 1-5% at mu = 0.

Conventions: G = group size (>= 2); p = success rate of a binary reward, or the mean reward;
eta, mu = learning rate and heavy-ball momentum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_discrete_lyapunov

from advisor._validation import as_float_array
from advisor._validation import check_int
from advisor._validation import check_interval


__all__ = [
    "GroupSizeRow",
    "degenerate_group_probability",
    "plateau_shift",
    "finite_group_plateau",
    "reward_variance",
    "stationary_variance",
    "group_size_table",
]

FloatArray = npt.NDArray[np.float64]
# (p*_inf - p*_G) * G = 0.28-0.39 on the 2-arm reference (bandit-findings.md section 7).
_PLATEAU_SHIFT_COEFFICIENT = 0.3


def _group_sizes(num_generations: Any) -> npt.NDArray[np.int64]:
    g = np.asarray(num_generations)
    if g.dtype.kind not in "iuf":  # strings, booleans, None: a wrong type, not a bad value
        raise TypeError(f"`num_generations` must be an integer or an array of integers, got "
                        f"{num_generations!r}.")
    if g.dtype.kind == "f" and np.all(np.isfinite(g)) and np.all(g == np.round(g)):
        g = g.astype(np.int64)  # integral floats (e.g. a pandas column) are integers
    if g.dtype.kind not in "iu" or (g < 2).any():
        raise ValueError(f"`num_generations` must be integers >= 2, got {num_generations!r}. "
                         "GRPO needs at least 2 completions per prompt.")
    return g.astype(np.int64)


def _rates(name: str, p: Any) -> FloatArray:
    return as_float_array(name, p, low=0.0, high=1.0)


def _check_broadcast(p: FloatArray, g: npt.NDArray[np.int64]) -> None:
    try:
        np.broadcast_shapes(p.shape, g.shape)
    except ValueError:
        raise ValueError(f"`success_rate` must broadcast against `num_generations` (one rate per "
                         f"G, or one for all), got shapes {p.shape} and {g.shape}.") from None


def degenerate_group_probability(success_rate: Any, num_generations: Any) -> FloatArray:
    """Probability that all G binary rewards of a group are equal: ``p^G + (1-p)^G``.

    Such a group has zero advantage and contributes no reward signal (TRL logs the fraction as
    ``frac_reward_zero_std``).

    Args:
        success_rate: p in [0, 1], array-like.
        num_generations: G >= 2, integer array-like (broadcast with p).

    Returns:
        The probability, broadcast shape.

    Example:
        >>> round(float(degenerate_group_probability(0.9, 8)), 4)
        0.4305
    """
    p, g = _rates("success_rate", success_rate), _group_sizes(num_generations)
    _check_broadcast(p, g)
    return np.asarray(p**g + (1.0 - p) ** g, float)


def plateau_shift(num_generations: Any, *, coefficient: float = _PLATEAU_SHIFT_COEFFICIENT
                  ) -> FloatArray:
    """Approximate plateau shift ``p*_G - p*_inf = -coefficient / G``.

    Args:
        num_generations: G >= 2, integer array-like.
        coefficient: 0.3 by default, measured 0.28-0.39 on the 2-arm reference; use
            `finite_group_plateau` for the exact value of a known bandit.

    Example:
        >>> float(plateau_shift(4))
        -0.075
    """
    check_interval("coefficient", coefficient, low=0.0)
    return -coefficient / _group_sizes(num_generations).astype(float)


def finite_group_plateau(problem: Any, num_generations: int) -> float:
    """Exact plateau ``p*_G`` of a known bandit from its finite-G expected update.

    Args:
        problem: An `advisor.bandit.BanditProblem`.
        num_generations: G >= 2.

    Example:
        >>> from advisor.bandit import BanditProblem
        >>> round(finite_group_plateau(BanditProblem.reference(), 8), 3)
        0.808
    """
    from advisor.bandit import fixed_point

    return fixed_point(problem, num_generations=check_int("num_generations", num_generations,
                                                          low=2))[1]


def reward_variance(num_generations: Any, *, scale: float, success_rate: Any = None
                    ) -> FloatArray:
    """Stationary variance of the mean reward, ``c (1 - p^G - (1-p)^G) / G``.

    Args:
        num_generations: G >= 2, integer array-like.
        scale: c = lim G Var p (> 0), e.g. measured at one G and divided by the factor there.
        success_rate: Plateau success rate p at each G for the degenerate-group correction;
            ``None`` gives the plain ``c / G`` law (1.5x accurate).

    Example:
        >>> round(float(reward_variance(4, scale=7.9e-4, success_rate=0.76)), 6)  # sim 1.41e-4
        0.000131
    """
    check_interval("scale", scale, low=0.0, low_closed=False)
    g = _group_sizes(num_generations)
    if success_rate is None:
        return np.asarray(scale / g, float)
    p = _rates("success_rate", success_rate)
    _check_broadcast(p, g)
    return np.asarray(scale * (1.0 - degenerate_group_probability(p, g)) / g, float)


def stationary_variance(problem: Any, num_generations: int, *, learning_rate: float,
                        momentum: float = 0.0) -> float:
    """Exact finite-G linear-noise variance of the reward for an on-policy 2-arm bandit.

    Linearises the finite-G expected update at its fixed point (stiffness K_G), takes the exact
    variance s^2 of the sampled direction there, and solves the discrete Lyapunov equation of
    ``e_{k+1} = (1 + mu - eta K_G) e_k - mu e_{k-1} + eta xi_k``; ``Var p = (p(1-p))^2 Var e``.

    Args:
        problem: A 2-arm `advisor.bandit.BanditProblem`.
        num_generations: G >= 2.
        learning_rate: eta > 0 (must be stable: eta K_G < 2(1 + mu)).
        momentum: Heavy-ball mu in [0, 1).

    Example:
        >>> from advisor.bandit import BanditProblem
        >>> v = stationary_variance(BanditProblem.reference(), 16, learning_rate=0.1)
        >>> round(v / 3.76e-5, 2)  # bandit-findings.md section 7: 3.76e-5
        1.0
    """
    from advisor.bandit import BanditProblem
    from advisor.bandit import expected_update_finite_g
    from advisor.bandit import fixed_point
    from advisor.bandit import jacobian_stiffness

    if not isinstance(problem, BanditProblem):
        raise TypeError(f"`problem` must be an advisor.bandit.BanditProblem, got "
                        f"{type(problem).__name__}.")
    if problem.n_arms != 2:
        raise ValueError(f"`problem` must have 2 arms for the exact variance, got "
                         f"{problem.n_arms}. Use reward_variance(...) for other problems.")
    g = check_int("num_generations", num_generations, low=2)
    eta = check_interval("learning_rate", learning_rate, low=0.0, low_closed=False)
    mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
    theta, p = fixed_point(problem, num_generations=g)
    k = jacobian_stiffness(problem, num_generations=g)[0]
    if not eta * k < 2.0 * (1.0 + mu):
        raise ValueError(f"`learning_rate` must satisfy eta*K_G < 2(1 + mu) = {2 * (1 + mu):g}, "
                         f"got eta*K_G = {eta * k:.3g}: the run is unstable.")
    _, cov = expected_update_finite_g(problem, theta, num_generations=g)
    s2 = float(cov[1, 1] + cov[0, 0] - 2.0 * cov[0, 1])  # noise of x = theta_1 - theta_0
    a = np.array([[1.0 + mu - eta * k, -mu], [1.0, 0.0]])
    var_x = solve_discrete_lyapunov(a, np.array([[eta * eta * s2, 0.0], [0.0, 0.0]]))[0, 0]
    return float((p * (1.0 - p)) ** 2 * var_x)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupSizeRow:
    """One row of `group_size_table`.

    Attributes:
        num_generations: G.
        degenerate_probability: ``p^G + (1-p)^G``, the expected ``frac_reward_zero_std``.
        plateau_shift: Approximate shift of the plateau, ``-0.3 / G``.
        relative_variance: Stationary reward variance relative to the first row's G
            (``(1 - q_G)/G`` law).
        completions_per_informative_group: ``G / (1 - q_G)``, the sampling cost of one group that
            carries a reward signal.
    """

    num_generations: int
    degenerate_probability: float
    plateau_shift: float
    relative_variance: float
    completions_per_informative_group: float


def group_size_table(success_rate: float, num_generations: Sequence[int] = (2, 4, 8, 16, 32, 64)
                     ) -> tuple[GroupSizeRow, ...]:
    """Trade-offs of the group size at a success rate p, one row per G (for the report).

    Args:
        success_rate: The task's current success rate p in [0, 1] (binary reward).
        num_generations: The G values, each >= 2.

    Returns:
        Rows in the order given.

    Example:
        >>> rows = group_size_table(0.2, [4, 16])
        >>> [round(r.degenerate_probability, 3) for r in rows]
        [0.411, 0.028]
    """
    p_arr = _rates("success_rate", success_rate)
    if p_arr.ndim != 0:
        raise TypeError(f"`success_rate` must be one number in [0, 1], got an array of shape "
                        f"{p_arr.shape}. Build one table per success rate.")
    p = float(p_arr)
    if hasattr(num_generations, "__iter__") and not isinstance(num_generations, (str, bytes)):
        num_generations = list(num_generations)  # generators, pandas Series, tuples
    gs = _group_sizes(np.atleast_1d(np.asarray(num_generations)))
    if gs.ndim != 1 or gs.size == 0:
        raise ValueError(f"`num_generations` must be a non-empty list, got {num_generations!r}.")
    q = degenerate_group_probability(p, gs)
    var = (1.0 - q) / gs
    shift = plateau_shift(gs)
    with np.errstate(divide="ignore"):
        cost = np.where(q < 1.0, gs / np.maximum(1.0 - q, 1e-300), np.inf)
    return tuple(
        GroupSizeRow(num_generations=int(g), degenerate_probability=float(qi),
                     plateau_shift=float(s), relative_variance=float(v / var[0]) if var[0] > 0
                     else float("nan"), completions_per_informative_group=float(c))
        for g, qi, s, v, c in zip(gs, q, shift, var, cost, strict=True)
    )

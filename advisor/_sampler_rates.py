"""The learning-rate map of `advisor.sampler.StableRegionSampler`.

Private to `advisor.sampler`: the model's view of one knob combination over the declared
learning-rate range (`_Table`), the map between the stability coordinate ``u`` in [0, 1] and
the learning rate (geometric for a log distribution, linear otherwise, on the declared step
grid), and the interpolations the recorded ``advisor:`` attributes use.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import FloatDistribution
from scipy.special import ndtri


@dataclasses.dataclass(frozen=True)
class _Table:
    """The model's view of one knob combination over the declared learning-rate range."""

    top: float  # model edge eta_max
    scale: float  # online edge factor s (global)
    local: float | None  # local edge factor of the knobs' neighbourhood (None: no collapse)
    upper: float  # sampling cap
    lower: float  # lowest rate worth sampling (time-constant floor; the declared low otherwise)
    grid: np.ndarray  # learning rates, shape (n,)
    probability: np.ndarray  # P(stable) at grid / s
    zeta: np.ndarray
    time_constant: np.ndarray
    regime: np.ndarray


def _probit(p: np.ndarray) -> np.ndarray:
    return ndtri(np.clip(np.asarray(p, dtype=float), 1e-300, 1.0))


def _loglog(x: float, lg: np.ndarray, y: np.ndarray) -> float | None:
    """Interpolate log y against log lr (exact for power laws such as zeta ~ eta^-1/2)."""
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return None
    return float(np.exp(np.interp(x, lg[ok], np.log(y[ok]))))


def _column_of(value: Any, n: int) -> np.ndarray:
    return np.full(n, value, dtype=object if isinstance(value, str) else None)


def _crossing(grid: np.ndarray, f: np.ndarray) -> float:
    """Largest x on the log grid before ``f`` first turns negative (log-linear interpolation)."""
    bad = np.flatnonzero(~(f >= 0))
    if bad.size == 0:
        return float(grid[-1])
    i = int(bad[0])
    if i == 0:
        return 0.0
    f0, f1 = float(f[i - 1]), float(f[i])
    w = f0 / (f0 - f1) if np.isfinite(f1) and f0 != f1 else 0.0
    return float(np.exp(np.log(grid[i - 1]) + w * (np.log(grid[i]) - np.log(grid[i - 1]))))


def _floor(grid: np.ndarray, tau: np.ndarray, tau_max: float, upper: float) -> float:
    """Smallest stable lr (<= upper) whose time constant is <= tau_max (log interpolation).

    tau falls with lr and rises again near the edge, so only the stable part is scanned; if no
    stable rate is fast enough (e.g. heavy momentum: tau >= 2 / (1 - mu)), there is no floor.
    """
    keep = grid <= upper
    g = grid[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        slow = np.log(tau[keep]) - math.log(tau_max)
    fast = np.flatnonzero(slow <= 0)
    if fast.size == 0:
        return float(grid[0])
    i = int(fast[0])
    if i == 0 or not np.isfinite(slow[i - 1]):
        return float(g[i])
    w = slow[i - 1] / (slow[i - 1] - slow[i])
    return float(np.exp(np.log(g[i - 1]) + w * (np.log(g[i]) - np.log(g[i - 1]))))


def _fastest(table: _Table, dist: FloatDistribution) -> tuple[float, float]:
    """(highest predicted rate 1/tau, its learning rate) over the grid points up to the cap and
    the cap itself; ties go to the larger learning rate."""
    hi = min(dist.high, table.upper)
    lrs = np.append(table.grid[table.grid <= hi], hi)
    lg = np.log(table.grid)
    taus = np.array([_loglog(math.log(x), lg, table.time_constant) or math.nan for x in lrs])
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(np.isfinite(taus) & (taus > 0), 1.0 / taus, -np.inf)
    if not np.isfinite(rate).any():
        return -math.inf, float(hi)
    best = np.flatnonzero(rate >= rate.max() * (1 - 1e-9))
    return float(rate.max()), float(lrs[best[-1]])


def _fraction_of(lr: float, dist: FloatDistribution, upper: float, lower: float) -> float:
    """Inverse of `_map_fraction`: the stability coordinate that maps to ``lr``."""
    hi = min(dist.high, max(upper, dist.low))
    lo = min(max(lower, dist.low), hi)
    if hi <= lo:
        return 1.0
    if dist.log:
        u = (math.log(lr) - math.log(lo)) / (math.log(hi) - math.log(lo))
    else:
        u = (lr - lo) / (hi - lo)
    return float(min(max(u, 0.0), 1.0))


def _on_grid(value: float, dist: FloatDistribution) -> float:
    """``value`` on ``dist``'s step grid (the largest grid point at or below it), in range."""
    if dist.step is not None:
        value = dist.low + math.floor((value - dist.low) / dist.step + 1e-9) * dist.step
    return float(min(max(value, dist.low), dist.high))


def _declared_fraction(lr: Any, dist: BaseDistribution | None) -> float | None:
    """Where ``lr`` sits in its declared range, in [0, 1] (log scale for a log distribution)."""
    if not isinstance(dist, FloatDistribution) or dist.single():
        return None
    try:
        x = float(lr)
        if dist.log:
            u = math.log(x / dist.low) / math.log(dist.high / dist.low)
        else:
            u = (x - dist.low) / (dist.high - dist.low)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return u if 0.0 <= u <= 1.0 else None


def _map_fraction(u: float, dist: FloatDistribution, upper: float,
                  lower: float | None = None) -> float:
    hi = min(dist.high, max(upper, dist.low))
    lo = dist.low if lower is None else min(max(lower, dist.low), hi)
    u = min(max(u, 0.0), 1.0)
    if dist.log:
        value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    else:
        value = lo + u * (hi - lo)
    if dist.step is not None:
        value = lo + math.floor((value - lo) / dist.step + 1e-9) * dist.step
    return float(min(max(value, lo), hi))

"""Ground truth for stability: the smallest divergent learning rate, by simulation.

Conventions:
    mu: heavy-ball momentum; lag: ``K_ref`` (piecewise) or ``d`` (sliding), shape ``(n_configs,)``;
    eta: learning rate; K: Jacobian stiffness of the slowest mode.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.bandit._classify import _codes
from advisor.bandit._fixed_point import fixed_point
from advisor.bandit._fixed_point import jacobian_stiffness
from advisor.bandit._kernel import FloatArray
from advisor.bandit._problem import BanditProblem
from advisor.bandit._simulate import _configs
from advisor.bandit._simulate import simulate
from advisor.exceptions import AdvisorWarning


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

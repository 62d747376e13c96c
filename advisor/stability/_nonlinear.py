"""Nonlinear check: the first divergent learning rate of a known bandit, by simulation.

The exact linear test over-predicts the edge of the importance-ratio (and logprob) surrogates with
piecewise refresh (1.4-2.4x at mu >= 0.5, bandit-findings.md section 9), and with more than one
mode (bandits with > 2 arms) a scalar (K, K_c) cannot be exact. Where the `advisor.bandit`
problem is known, its mean-field reduction is simulated instead (milliseconds per config).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from advisor.dynamics import Regime
from advisor.exceptions import AdvisorWarning
from advisor.stability._theory import FloatArray


# Scan points per decade of learning rate before bisection: the ratio surrogate has stable
# islands above its edge and divergent bands below it as narrow as ~8% in lr (unseen 5-arm
# problems), which a 20-per-decade scan (12% steps) steps over; 40 per decade: 6% steps.
_SIM_PER_DECADE = 40
_SIM_BISECT = 8
# Below the first divergent lattice point the boundary can be chaotic: divergent slivers of
# 0.1-5% in lr interleaved with stable holes over up to ~15% (ratio surrogate, piecewise refresh,
# mu = 0.5, unseen 3-arm and mean-advantage problems: the transient blows up or not depending on
# where it lands). A 6% lattice steps over them (a 1.45% one still landed in two holes in a row);
# so the last _SIM_REFINE_SPAN lattice steps below it are rescanned _SIM_REFINE times finer
# (0.36% steps) and the first divergent fine point is bisected. Isolated slivers (< 0.2% wide)
# occur up to 2x below the lattice edge (unseen hard prompt, p_ref 0.06, mu = 0.9), so the
# window spans 12 lattice steps (a factor 2), as the benchmark's ground truth does.
_SIM_REFINE = 16
_SIM_REFINE_SPAN = 12
_SIM_CHUNK = 2048  # configs per simulate call (bounded memory)
_SIM_EXTEND = 2 * _SIM_PER_DECADE  # points added below a wide scan whose bottom diverges
# Fine steps (of 0.36%) below a refinement window whose lowest point diverges, tried at 1, 2,
# 4, ..., _SIM_DOWN steps (10 runs, down to a factor 10^(512/640) = 6.3: about where runs of an
# accurately measured K stop settling in time, 30(1 - mu)/(K N) being ~6x above that).
_SIM_DOWN = 512


# On-policy momentum factor of the linear test WITHOUT the bandit (what a real TRL run gets).
# On-policy (piecewise K_ref = 1, sliding d = 0) the exact linear test with the true (Jacobian)
# K over-predicts the simulated 2-arm bandit's first divergence (`empirical_threshold`, 2,000
# steps) by a ratio that grows with momentum: 1.00 at mu = 0 on every problem measured, up to
# 1.23 at 0.5-0.7, 1.37 at 0.8, 2.24 at 0.9 and 2.57 at 0.95. The nodes are the largest ratio on
# the build set (the 2-arm reference, the hard prompt p_ref 0.05 and three hard prompts drawn
# with seed 11 by benchmarks/prediction_accuracy.py) times 1.05, made non-decreasing in mu. On
# held-out problems (four seed-23 hard prompts, three seed-31 very hard prompts) they cover
# every on-policy ratio except two near-saturated prompts (beta 0.06, p* 0.997) that the linear
# test misses by 2-4x even at mu = 0 with a lag (tests/test_stability_no_problem.py).
_FACTOR_MU = np.array([0.0, 0.5, 0.7, 0.8, 0.9, 0.95])
_FACTOR_U = -np.log10(1.0 - _FACTOR_MU)  # nodes in decades of 1 / (1 - mu)
_FACTOR_ON_POLICY = np.array([1.0, 1.30, 1.30, 1.44, 2.36, 2.70])
_FACTOR_SLOPE = (_FACTOR_ON_POLICY[-1] - _FACTOR_ON_POLICY[-2]) / (_FACTOR_U[-1] - _FACTOR_U[-2])


def momentum_factor(mu: FloatArray, lag: Any, *, scheme: str) -> FloatArray:
    """Divisor of the linear bound without the bandit: the measured on-policy over-prediction.

    On-policy configurations (piecewise K_ref = 1, sliding d = 0) get the table over mu (nodes
    0, 0.5, 0.7, 0.8, 0.9, 0.95 -> 1, 1.3, 1.3, 1.44, 2.36, 2.7; linear in ``-log10(1 - mu)``
    between nodes and along the last segment beyond 0.95, e.g. 3.49 at 0.99); lagged ones 1
    (the piecewise K_ref > 1, mu >= 0.5 regime has the model's ``safety`` instead).

    Example:
        >>> momentum_factor(np.array([0.0, 0.9, 0.9]), np.array([1, 1, 4]),
        ...                 scheme="piecewise").tolist()
        [1.0, 2.36, 1.0]
    """
    out = np.ones(mu.shape)
    rows = on_policy_rows(mu, lag, scheme=scheme)
    out[rows] = _on_policy_factor(mu[rows])
    return out


def on_policy_rows(mu: FloatArray, lag: Any, *, scheme: str) -> Any:
    """Flat indices of the on-policy configurations with momentum (where `momentum_factor` > 1)."""
    on = np.asarray(lag) <= (0 if scheme == "sliding" else 1)
    return np.flatnonzero(on & (mu > 0.0))


def _on_policy_factor(mu: FloatArray) -> FloatArray:
    """The on-policy table of `momentum_factor` at momenta ``mu``."""
    u = -np.log10(1.0 - mu)
    out = np.interp(u, _FACTOR_U, _FACTOR_ON_POLICY)
    if u.size and float(u.max()) > _FACTOR_U[-1]:
        far = u > _FACTOR_U[-1]
        out[far] = _FACTOR_ON_POLICY[-1] + _FACTOR_SLOPE * (u[far] - _FACTOR_U[-1])
    return out


def scan_lattice(low: Any, high: Any, *, per_decade: int = _SIM_PER_DECADE) -> FloatArray:
    """Learning rates ``10^(j / per_decade)`` from ``low`` up to at least ``high``, per row.

    The points lie on one absolute lattice, so scans of one problem built from different
    estimates of K (a pilot's, the Jacobian's) test the SAME learning rates: a narrow divergent
    band is then hit or missed by both, and their edges differ only by the bisection tolerance.
    Returns shape ``(n_rows, n_points)``: rows are padded upward to a common length (extra points
    lie above ``high``).

    Example:
        >>> scan_lattice([0.1], [1.0], per_decade=4).round(4).tolist()
        [[0.1, 0.1778, 0.3162, 0.5623, 1.0]]
    """
    lo = np.atleast_1d(np.asarray(low, float))
    hi = np.atleast_1d(np.asarray(high, float))
    j0 = np.ceil(per_decade * np.log10(lo) - 1e-9)  # never below low: slow runs cannot settle
    j1 = np.ceil(per_decade * np.log10(hi) - 1e-9)
    n = max(2, int((j1 - j0).max()) + 1)
    return 10.0 ** ((j0[:, None] + np.arange(n)[None, :]) / per_decade)


def nonlinear_regime(mu: FloatArray, lag: Any, *, scheme: str, surrogate: str,
                     problem_known: bool) -> Any:
    """Where a check caps the linear test (every surrogate with the bandit known).

    Without the bandit: piecewise refresh, K_ref > 1, mu >= 0.5, where the linear test
    over-predicts 1.4-2.4x (false-safe 18-34%, bandit-findings.md section 5); the safety factor
    applies there. With the bandit known, every configuration is checked by simulation: on
    unseen 2-arm problems the linear test also over-predicts on-policy and with sliding lag
    (5-10% on hard prompts, false-safe 2-3%), and under-predicts where the bandit settles
    above it (piecewise refresh above the on-policy bound; the linear horizon rule), so the
    simulated check scans up to 1.5x the asymptotic linear edge and sets the bound.
    """
    if problem_known:  # every surrogate: on-policy they are one update, and the linear
        return np.ones(mu.shape, bool)  # test over-predicts there too (stale: 37% at mu 0.8)
    if surrogate not in ("ratio", "logprob"):
        return np.zeros(mu.shape, bool)
    if scheme != "piecewise":
        return np.zeros(mu.shape, bool)
    return (mu >= 0.5) & (np.asarray(lag) > 1)


def simulated_edge(problem: Any, mu: FloatArray, lag: Any, *, scheme: str, eta_lin: FloatArray,
                   wide: bool, stiffness: float, n_steps: int,
                   cache: dict[tuple[Any, ...], float]) -> FloatArray:
    """First divergent lr of the simulated bandit (scan + geometric bisection), cached.

    ``wide=False`` scans [eta_lin/16, eta_lin] (the caller passes 1.5x the linear edge);
    ``wide=True`` scans the whole range where a run can settle, [30(1-mu)/(K N), 8(1+mu)/K].
    Neither starts below 30(1-mu)/(K N), where runs are too slow to settle in ``n_steps``. Scans
    run on the absolute lattice of `scan_lattice`, and two decades further down where their
    lowest point already diverges (large lags with heavy momentum can blow up at any rate).
    """
    from advisor.bandit import simulate

    keys = [(round(float(m), 12), int(g), scheme, wide) for m, g in zip(mu, lag, strict=True)]
    todo = sorted({k for k in keys if k not in cache})
    if not todo:
        return np.array([cache[k] for k in keys])
    m = np.array([k[0] for k in todo])
    g = np.array([k[1] for k in todo])
    first_eta = dict(zip(keys, eta_lin, strict=True))
    hi = np.array([first_eta[k] for k in todo])
    floor = 30.0 * (1.0 - m) / (stiffness * n_steps)  # slower runs cannot settle in n_steps
    if wide:
        lo, hi = floor, np.maximum(8.0 * (1.0 + m) / stiffness, 2.0 * floor)
    else:
        lo = np.maximum(hi / 16.0, floor)
        hi = np.maximum(hi, 2.0 * lo)
    grid = scan_lattice(lo, hi)
    n = grid.shape[1]

    def diverged(eta: FloatArray, mom: FloatArray, ref: Any) -> Any:
        out = np.empty(eta.size, bool)
        for i in range(0, eta.size, _SIM_CHUNK):
            sl = slice(i, i + _SIM_CHUNK)
            run = simulate(problem, learning_rate=eta[sl], momentum=mom[sl],
                           refresh_interval=ref[sl], refresh_scheme=scheme, n_steps=n_steps)
            out[sl] = [r is Regime.DIVERGENT for r in run.regimes()]
        return out

    bad = diverged(grid.ravel(), np.repeat(m, n), np.repeat(g, n)).reshape(grid.shape)
    settled_from = np.zeros(len(todo), np.int64)  # first scan point known to have settled
    low = np.flatnonzero(bad[:, 0])
    if low.size:  # the edge lies below the scan: extend it downward by _SIM_EXTEND points
        e = _SIM_EXTEND
        below = grid[low, :1] * 10.0 ** (np.arange(-e, 0) / _SIM_PER_DECADE)
        bad_below = diverged(below.ravel(), np.repeat(m[low], e), np.repeat(g[low], e))
        # widen the scan by e columns so the extended rows keep their top (an edge up there
        # must not be dropped); the other rows' new columns lie above their top and are never
        # read (their first divergent point, or "none", is within the old columns)
        above = grid[:, -1:] * 10.0 ** (np.arange(1, e + 1) / _SIM_PER_DECADE)
        grid = np.concatenate([grid, above], axis=1)
        bad = np.concatenate([bad, np.zeros((len(todo), e), bool)], axis=1)
        grid[low] = np.concatenate([below, grid[low, :n]], axis=1)
        ext = np.concatenate([bad_below.reshape(below.shape), bad[low, :n]], axis=1)
        n = n + e
        never = ~(~ext).any(1)
        settled_from[low] = (~ext).argmax(1)
        # runs far below 30(1-mu)/(K N) cannot settle and read "divergent": the edge is the
        # first divergent point above the first settled one (the bottom if none settled)
        ext &= np.maximum.accumulate(~ext, axis=1)
        ext[never, 0] = True
        bad[low] = ext
        if never.any():
            i = int(low[np.flatnonzero(never)[0]])
            warnings.warn(
                f"No simulated run of the bandit settled within {n_steps} steps at any learning "
                f"rate for {int(never.sum())} configuration(s) (e.g. momentum {m[i]:g}, "
                f"{'K_ref' if scheme == 'piecewise' else 'lag'} {int(g[i])}): their bound is "
                f"the bottom of the scan ({grid[i, 0]:.3g}), i.e. nothing is called stable. A "
                "sampler never refreshed within the run, or momentum so close to 1 that no run "
                "settles in time, does this; raise simulation_steps if the run is longer.",
                AdvisorWarning, stacklevel=5)
    first = np.where(bad.any(1), bad.argmax(1), n)
    result = np.where(first == n, hi, grid[:, 0])
    rows = np.flatnonzero((first > 0) & (first < n))
    if rows.size:
        # the refinement may look below the scan (after a downward extension: not below the
        # first point that settled; else below the floor too, where only a divergence above a
        # settled point counts: the floor comes from the measured K, which can be too soft)
        low_ok = np.where(settled_from > 0, grid[np.arange(len(todo)), settled_from], 0.0)
        a, b = _refine(grid, first, low_ok, rows, lambda eta, r: diverged(eta, m[r], g[r]),
                       slow=floor)
        open_ = np.flatnonzero(a < b)  # a == b: nothing below settled, b is an upper bound
        for _ in range(_SIM_BISECT if open_.size else 0):
            mid = np.sqrt(a[open_] * b[open_])
            d = diverged(mid, m[rows[open_]], g[rows[open_]])
            a[open_], b[open_] = np.where(d, a[open_], mid), np.where(d, mid, b[open_])
        result[rows] = b
    cache.update({k: float(r) for k, r in zip(todo, result, strict=True)})
    return np.array([cache[k] for k in keys])


def _refine(grid: FloatArray, first: Any, floor: Any, rows: Any, diverged: Any,
            slow: Any = None) -> tuple[FloatArray, FloatArray]:
    """Bracket of the first divergent rate on the fine lattice below each row's lattice edge.

    ``grid[r, first[r]]`` is the first divergent lattice point of row ``r``. The fine lattice
    ``10^(j / (40 * _SIM_REFINE))`` from ``_SIM_REFINE_SPAN`` lattice steps below it (not below
    ``floor[r]``: after a downward extension, the first scan point known to settle) up to it is
    simulated, below the scan's bottom too. Below ``slow[r]`` (30(1 - mu)/(K N) from the
    measured K; None: nowhere) a run may read divergent only because it is too slow to settle,
    so there a divergence counts only above a settled point; that floor is not trusted as an edge
    (seed 1729 many #1: a K 30% too soft put it at 3.28, above divergent bands from 3.117).
    Where the lowest counted point of the window diverges, nothing below it is known, so it is
    followed downward (`_extend_below`) to a simulated settled point. The returned bracket
    ``(a, b)`` has ``b`` divergent and ``a`` settled (simulated or scanned) with no simulated
    point between them; ``a == b`` (the lowest divergent point, an upper bound) where no point
    within ``_SIM_DOWN`` fine steps below settled; ``a`` divergent only where every window point
    below ``b`` read divergent below ``slow`` (``b`` is then within one fine step of it).
    ``diverged(eta, row_index)`` classifies flat runs.
    """
    top = grid[rows, first[rows]]
    bottom = np.maximum(top * 10.0 ** (-_SIM_REFINE_SPAN / _SIM_PER_DECADE), floor[rows])
    fine = _SIM_PER_DECADE * _SIM_REFINE
    j_top = np.rint(fine * np.log10(top))
    steps = np.arange(_SIM_REFINE_SPAN * _SIM_REFINE, 0, -1)  # ascending rates below top
    pts = 10.0 ** ((j_top[:, None] - steps[None, :]) / fine)
    # inside the window; lattice points of the scan above its bottom are known to have settled
    scanned = (steps[None, :] % _SIM_REFINE == 0) & (pts >= grid[rows, :1] * (1.0 - 1e-9))
    keep = ~scanned & (pts >= bottom[:, None] * (1.0 - 1e-9))
    r_idx, c_idx = np.nonzero(keep)
    bad = np.zeros(pts.shape, bool)
    if r_idx.size:
        bad[r_idx, c_idx] = diverged(pts[r_idx, c_idx], rows[r_idx])
    # the fine points plus the lattice edge; below the slow floor, only a divergence above a
    # settled point counts
    ladder = np.concatenate([pts, top[:, None]], axis=1)
    known = np.concatenate([keep | scanned, np.ones((rows.size, 1), bool)], axis=1)
    bad = np.concatenate([bad, np.ones((rows.size, 1), bool)], axis=1)
    settled = known & ~bad
    fast = ladder >= (0.0 if slow is None else slow[rows, None] * (1.0 - 1e-9))
    count = bad & (fast | np.maximum.accumulate(settled, axis=1))
    k = count.argmax(1)
    at = np.arange(rows.size)
    b = ladder[at, k]
    a = ladder[at, np.maximum(k - 1, 0)].copy()
    open_end = (k == 0) | ~known[at, np.maximum(k - 1, 0)]
    if open_end.any():
        # the window's lowest point diverges: its settled end must be simulated too
        idx = np.flatnonzero(open_end)
        a[idx], b[idx] = _extend_below(b[idx], rows[idx], diverged)
    return a, b


def _extend_below(lowest: FloatArray, rows: Any, diverged: Any
                  ) -> tuple[FloatArray, FloatArray]:
    """Settled end below divergent points ``lowest``: fine steps 1, 2, 4, ..., ``_SIM_DOWN``.

    Returns ``(a, b)``: ``a`` the highest of these points that settled, ``b`` the point above it
    (divergent); where none settled, both are the lowest point tried (an upper bound: runs
    far below the scan's floor can be too slow to settle, so nothing below is called stable).
    """
    fine = _SIM_PER_DECADE * _SIM_REFINE
    n_try = int(math.log2(_SIM_DOWN)) + 1
    cand = lowest[:, None] * 10.0 ** (-(2.0 ** np.arange(n_try))[None, :] / fine)
    bad = diverged(cand.ravel(), np.repeat(rows, n_try)).reshape(cand.shape)
    ladder = np.concatenate([lowest[:, None], cand], axis=1)
    found = (~bad).any(1)
    i = (~bad).argmax(1) + 1  # ladder index of the first settled point going down
    at = np.arange(lowest.size)
    a = np.where(found, ladder[at, i], cand[:, -1])
    b = np.where(found, ladder[at, i - 1], cand[:, -1])
    return a, b

"""Checked momentum tables of the exact linear edge, for calls with many distinct momenta.

`critical_rate` costs ~0.1 ms per distinct (momentum, K_ref) pair (piecewise; ~3.5 ms sliding
with eigenvalues, ~0.1 ms with the Schur-Cohn kernel), so 10^6 distinct momenta took minutes.
Per distinct K_ref (or lag), ``log a*`` is tabulated against ``u = -log(1 - mu)`` on an adaptive
grid of exact solves and interpolated linearly; every interval of the grid is CHECKED: its
midpoint is solved exactly and the interval is split while the midpoint disagrees with the chord
by more than ``_TABLE_TOL`` in ``log a*`` (the midpoint then joins the grid, which roughly
quarters the error of a smooth stretch; sliding edges have kinks, so there an interval is final
only once it and its parent passed). Intervals that still fail at width ``_MIN_WIDTH`` (jumps of
the edge) are marked unresolved, and the queries inside them are solved exactly by the caller.

Measured against per-config exact solves (``tests/test_stability_speed_accuracy.py``): max
relative error <= 1e-3 except at <= 0.2% of configurations (measured 0-0.06%), which sit at
discontinuities of the exact solver itself (its bisection steps over unstable bands narrower
than its steps, so its edge flips between two values within 1e-5 in momentum); there the table
returns the exact value of a momentum within 2e-3. Models with a horizon do not use these
tables (see `StabilityModel`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from advisor.stability._theory import FloatArray
from advisor.stability._theory import _critical_rate


_TABLE_TOL = 2.5e-4  # midpoint check on log a*; the final grid (midpoints in) is ~4x better
_INITIAL_NODES = 49  # per K_ref, uniform in u before refinement
_MIN_WIDTH = 1e-7  # in u = -log(1 - mu): narrower failing intervals are solved per query
_MAX_ROUNDS = 40
_U_FLOOR = -math.log(0.05)  # tables span at least mu in [0, 0.95] (so they are reused)


@dataclasses.dataclass(frozen=True)
class _Table:
    """Exact ``log a*`` at nodes ``u`` of one (scheme, lag, horizon); unresolved intervals."""

    u: FloatArray
    log_rate: FloatArray
    bad_left: FloatArray
    bad_right: FloatArray

    @property
    def u_max(self) -> float:
        return float(self.u[-1])


def build_tables(lags: npt.NDArray[np.int64], u_max: FloatArray, rc: float, scheme: str,
                 horizon: int | None) -> list[_Table]:
    """Checked tables on ``[0, u_max[j]]`` for each lag (one batched exact solve per round)."""
    def solve(u: FloatArray, lag: npt.NDArray[np.int64]) -> FloatArray:
        a = _critical_rate(-np.expm1(-u), lag, rc, scheme, horizon, fast=True)
        return np.log(a)

    n_lag = lags.size
    t = np.linspace(0.0, 1.0, _INITIAL_NODES)
    u0 = (u_max[:, None] * t[None, :]).ravel()
    j0 = np.repeat(np.arange(n_lag), _INITIAL_NODES)
    f0 = solve(u0, lags[j0])
    nodes_u, nodes_f, nodes_j = [u0], [f0], [j0]
    # pending intervals: (lag index, left, right, f left, f right)
    f0m = f0.reshape(n_lag, _INITIAL_NODES)
    u0m = u0.reshape(n_lag, _INITIAL_NODES)
    pj = np.repeat(np.arange(n_lag), _INITIAL_NODES - 1)
    pl, pr = u0m[:, :-1].ravel(), u0m[:, 1:].ravel()
    fl, fr = f0m[:, :-1].ravel(), f0m[:, 1:].ravel()
    # sliding edges have kinks (the dominant root changes) that a parent's midpoint can barely
    # see: there an interval is final only once it AND its parent passed (two levels); the
    # piecewise edge is erratic in places (see `_check`), where two levels multiply the nodes
    passed = np.full(pj.size, scheme != "sliding")
    bad_j, bad_l, bad_r = [], [], []
    for _ in range(_MAX_ROUNDS):
        if pj.size == 0:
            break
        um = 0.5 * (pl + pr)
        fm = solve(um, lags[pj])
        nodes_u.append(um)
        nodes_f.append(fm)
        nodes_j.append(pj)
        fail = ~(np.abs(fm - 0.5 * (fl + fr)) <= _TABLE_TOL)  # NaN/inf fail too
        narrow = fail & (pr - pl < 2.0 * _MIN_WIDTH)
        bad_j.append(pj[narrow])
        bad_l.append(pl[narrow])
        bad_r.append(pr[narrow])
        go = (fail & ~narrow) | (~fail & ~passed)
        pj = np.concatenate([pj[go], pj[go]])
        pl, pr = np.concatenate([pl[go], um[go]]), np.concatenate([um[go], pr[go]])
        fl, fr = np.concatenate([fl[go], fm[go]]), np.concatenate([fm[go], fr[go]])
        passed = np.tile(~fail[go], 2) | (scheme != "sliding")
    bad_j.append(pj)
    bad_l.append(pl)
    bad_r.append(pr)
    uu, ff, jj = (np.concatenate(v) for v in (nodes_u, nodes_f, nodes_j))
    bj, bl, br = (np.concatenate(v) for v in (bad_j, bad_l, bad_r))
    order = np.lexsort((uu, jj))
    uu, ff, jj = uu[order], ff[order], jj[order]
    cuts = np.searchsorted(jj, np.arange(n_lag + 1))
    tables = []
    for j in range(n_lag):
        sl = slice(cuts[j], cuts[j + 1])
        sel = bj == j
        o = np.argsort(bl[sel])
        tables.append(_Table(u=uu[sl], log_rate=ff[sl], bad_left=bl[sel][o],
                             bad_right=br[sel][o]))
    return tables


def lookup(table: _Table, u: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Interpolated ``a*`` at ``u`` and where it must be solved exactly (unresolved)."""
    rate = np.exp(np.interp(u, table.u, table.log_rate))
    if table.bad_left.size == 0:
        return rate, ~np.isfinite(rate)
    b = np.searchsorted(table.bad_left, u, side="right") - 1
    inside = (b >= 0) & (u <= table.bad_right[np.maximum(b, 0)])
    return rate, inside | ~np.isfinite(rate)


def table_bounds(u_query_max: FloatArray) -> FloatArray:
    """Upper end of the tabulated range for a lag whose queries reach ``u_query_max``."""
    return np.maximum(u_query_max * (1.0 + 1e-12), _U_FLOOR)

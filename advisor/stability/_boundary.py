"""Boundary locus of the sliding-lag polynomial: the first rate at which a root meets |z| = 1.

The sliding-lag characteristic polynomial is linear in the rate ``a = eta K``::

    p(z; a) = N(z) + a D(z),   N(z) = z^(d-1) (z - 1) (z - mu),   D(z) = rc z^d + 1 - rc

(``d = 0``: divide by ``z``). A root lies on the unit circle at ``z = exp(i theta)`` exactly when
``a = -N / D`` there is real, i.e. where ``g(theta) = Im(N conj D)`` vanishes. At ``a -> 0+``
every root is inside (the root at ``z = 1`` moves to ``1 - a / (1 - mu)``), so the first edge of
the stable region is the smallest positive real ``a(theta)``: the D-decomposition of the
rate axis. Each configuration costs one vectorised evaluation of ``g`` on an angle grid
(uniform, plus a geometric stretch towards ``theta = 0`` for momenta near 1), a bisection of
every sign change, and ``theta = pi`` (where ``g`` is zero by symmetry).

It replaces a scan and ~15 bisection steps of the Schur-Cohn test per configuration where only
the asymptotic edge is asked (the momentum tables of `advisor.stability._table`), ~10x faster.
Every result is checked by the Schur-Cohn test (stable just below, unstable just above); where
either check fails (a sign change the grid did not resolve, a tangency) the caller solves that
configuration by bisection instead.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from advisor.stability._schur import sliding_stable


FloatArray = npt.NDArray[np.float64]

_PER_DEGREE = 48  # uniform angle points per unit of the polynomial's degree
_NEAR_ZERO = 24  # geometric points between _THETA_MIN and the first uniform point
_THETA_MIN = 1e-7
_BISECT = 12  # halvings of a sign-change cell before the zero of g is interpolated in it
_CHUNK = 2048  # configurations per vectorised pass (memory: chunk x grid points)
_REFINE_SPAN = 1.5  # candidates this close to the smallest rough one are refined
_CHECK = 1e-4  # relative offsets of the stable/unstable checks around the result


def _basis(theta: FloatArray, d: Any, *, imag_only: bool = False) -> FloatArray:
    """Real vectors over ``theta`` (broadcast with the lag ``d``) in which ``N conj D`` is linear.

    ``N = A - mu B`` and ``D = 1 + rc C`` with ``A = z^d (z - 1)``, ``B = z^(d-1) (z - 1)``,
    ``C = z^d - 1`` (``d = 0`` included: ``B = (z - 1) / z``, ``C = 0``), so
    ``N conj D = A - mu B + rc (A C* - mu B C*)`` and ``|D|^2 = 1 + 2 rc Re C + rc^2 |C|^2``.
    Rows: the imaginary parts of A, B, A C*, B C* (``imag_only``), then their real parts,
    ``Re C`` and ``|C|^2``.
    """
    z_d = np.exp(1j * d * theta)
    b_ = z_d * (1.0 - np.exp(-1j * theta))
    a_ = b_ * np.exp(1j * theta)
    c_ = z_d - 1.0
    ac, bc = a_ * np.conj(c_), b_ * np.conj(c_)
    rows = [a_.imag, b_.imag, ac.imag, bc.imag]
    if not imag_only:
        rows += [a_.real, b_.real, ac.real, bc.real, c_.real, (c_ * np.conj(c_)).real]
    return np.stack(rows)


def _im(basis: FloatArray, mu: Any, rc: Any) -> FloatArray:
    """``g = Im(N conj D)``: zero exactly where ``a(theta)`` is real."""
    return basis[0] - mu * basis[1] + rc * (basis[2] - mu * basis[3])


def _rate(basis: FloatArray, mu: Any, rc: Any) -> FloatArray:
    """``a = -Re(N conj D) / |D|^2`` (real where `_im` is zero)."""
    ra, rb, rac, rbc, rcr, cc = basis[4:]
    with np.errstate(all="ignore"):
        return -(ra - mu * rb + rc * (rac - mu * rbc)) / (1.0 + rc * (2.0 * rcr + rc * cc))


@functools.lru_cache(maxsize=256)
def _grid(d: int) -> tuple[FloatArray, FloatArray]:
    """Angles for lag ``d`` (uniform at ``_PER_DEGREE`` per degree, geometric towards 0), basis."""
    n_uniform = _PER_DEGREE * (max(d, 1) + 1)
    first = np.pi / n_uniform
    theta = np.concatenate([np.geomspace(_THETA_MIN, first, _NEAR_ZERO, endpoint=False),
                            np.linspace(first, np.pi, n_uniform, endpoint=False)])
    theta.flags.writeable = False
    basis = _basis(theta, float(d))
    basis.flags.writeable = False
    return theta, basis


def _first_crossing(mu: FloatArray, rc: FloatArray, d: npt.NDArray[np.int64]) -> FloatArray:
    """Smallest positive real ``a(theta)`` per configuration (``inf`` if none).

    Every sign change of ``g`` on the lag's grid gives a candidate rate by linear interpolation
    of ``a`` across its cell; the candidates within ``_REFINE_SPAN`` of the row's smallest are
    bisected ``_BISECT`` times in ``theta`` (all lags in one pass), the zero of ``g``
    interpolated in the last cell, and the exact ``a`` taken there.
    """
    a_pi = _rate(_basis(np.pi, d.astype(float)), mu, rc)  # z = -1: always real
    best = np.where(np.isfinite(a_pi) & (a_pi > 0.0), a_pi, np.inf)
    parts = []
    for lag in np.unique(d):
        idx = np.flatnonzero(d == lag)
        theta, basis = _grid(int(lag))
        r0 = rc[idx[0]]
        if np.all(rc[idx] == r0):  # one K_c / K (the tables): g = P - mu Q on the grid
            g = (basis[0] + r0 * basis[2])[None, :] - mu[idx, None] * (
                basis[1] + r0 * basis[3])[None, :]
        else:
            g = _im(basis[:4, None, :], mu[idx, None], rc[idx, None])
        r, c = np.nonzero(np.signbit(g[:, :-1]) != np.signbit(g[:, 1:]))
        parts.append((idx[r], theta[c], theta[c + 1], g[r, c], g[r, c + 1],
                      basis[:, c], basis[:, c + 1]))
    row, lo, hi, g_lo, g_hi = (np.concatenate([p[i] for p in parts]) for i in range(5))
    if not row.size:
        return best
    b_lo, b_hi = (np.concatenate([p[i] for p in parts], axis=1) for i in (5, 6))
    mr, rr, dr = mu[row], rc[row], d[row].astype(float)
    with np.errstate(all="ignore"):
        approx = _rate(b_lo, mr, rr) + g_lo / (g_lo - g_hi) * (
            _rate(b_hi, mr, rr) - _rate(b_lo, mr, rr))
    approx = np.where(np.isfinite(approx) & (approx > 0.0), approx, np.inf)
    rough = best.copy()
    np.minimum.at(rough, row, approx)
    pick = np.flatnonzero(approx <= rough[row] * _REFINE_SPAN)
    row, mr, rr, dr = row[pick], mr[pick], rr[pick], dr[pick]
    lo, hi, g_lo, g_hi = lo[pick], hi[pick], g_lo[pick], g_hi[pick]
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        g_mid = _im(_basis(mid, dr, imag_only=True), mr, rr)
        same = np.signbit(g_mid) == np.signbit(g_lo)
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        g_lo, g_hi = np.where(same, g_mid, g_lo), np.where(same, g_hi, g_mid)
    with np.errstate(all="ignore"):
        frac = np.clip(g_lo / (g_lo - g_hi), 0.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 0.5)
    a = _rate(_basis(lo + frac * (hi - lo), dr), mr, rr)
    np.minimum.at(best, row, np.where(np.isfinite(a) & (a > 0.0), a, np.inf))
    return best


def sliding_edge(mu: Any, rc: Any, lag: Any) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """First unstable rate of the sliding-lag recursion, and where it is confirmed.

    Args:
        mu: Heavy-ball momentum in [0, 1); rc: ``K_c / K``; lag: sliding lag ``d >= 0`` (flat
            arrays of one length).

    Returns:
        ``(a_star, confirmed)``: the edge, capped by the on-policy bound ``2 (1 + mu)``, and
        whether the Schur-Cohn test confirms it (stable at ``a* (1 - 1e-4)``, unstable at
        ``a* (1 + 1e-4)`` unless capped). Unconfirmed entries must be solved another way.

    Example:
        >>> a, ok = sliding_edge(np.array([0.6]), np.array([0.0]), np.array([1]))
        >>> round(float(a[0]), 9), bool(ok[0])  # d = 1, pure delay: a* = 1 - mu
        (0.4, True)
    """
    mu, rc = np.asarray(mu, float), np.asarray(rc, float)
    lag = np.asarray(lag, np.int64)
    edge = np.empty(mu.size)
    for start in range(0, mu.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        edge[sl] = _first_crossing(mu[sl], rc[sl], lag[sl])
    bound = 2.0 * (1.0 + mu)
    capped = edge >= bound
    edge = np.minimum(edge, bound)
    both = sliding_stable(np.concatenate([edge * (1.0 - _CHECK), edge * (1.0 + _CHECK)]),
                          np.tile(mu, 2), np.tile(rc, 2), np.tile(lag, 2))
    below, above = both[:mu.size], ~both[mu.size:] | capped
    return edge, below & above

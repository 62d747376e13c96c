"""Theory layer: the exact discrete linear stability test and the closed forms.

Conventions (symbols used by the private kernels; arrays broadcast over configs, shape ``(n,)``):
    eta    learning rate; K stiffness (relaxation rate of the mean reward per unit lr);
    K_c, K_o = current-policy / sampling-policy parts of K (K = K_c + K_o); rc = K_c / K;
    a      = eta * K, the dimensionless per-step rate at zero momentum;
    mu     heavy-ball momentum (0 for AdamW: adam_beta1 is an EMA and does not enter);
    K_ref  refresh interval (piecewise scheme); d = sliding lag.

The update linearised at the fixed point is

.. math::
    e_{k+1} = (1 + \\mu - \\eta K_c) e_k - \\mu e_{k-1} - \\eta K_o e_{old}(k).

Sliding lag ``e_old = e_{k-d}``: stable iff every root of
``z^{d+1} - (1+mu-eta K_c) z^d + mu z^{d-1} + eta K_o`` lies inside the unit circle.
Piecewise refresh every K_ref steps (GRPO): stable iff the Floquet monodromy ``S^{K_ref} R`` has
spectral radius < 1, with ``S = [[1+mu-eta K_c, -mu, -eta K_o], [1,0,0], [0,0,1]]`` and ``R``
copying e_k into e_old. The on-policy bound ``eta K < 2(1+mu)`` always applies; with a training
horizon, oscillating modes must also settle within it (research notes theory.md section 2).
"""

from __future__ import annotations

import math
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt

from advisor._validation import as_float_array
from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.dynamics import Regime
from advisor.stability._boundary import sliding_edge
from advisor.stability._horizon import _settles
from advisor.stability._schur import sliding_stable


FloatArray = npt.NDArray[np.float64]
Scheme = Literal["piecewise", "sliding"]

_STABLE_TOL = 1e-12
_N_SCAN = 48  # log-spaced scan points per config before bisection (ratio ~1.2 between points)
# The first unstable scan cell is bisected up to _EDGE_LEVELS levels per round: the 2^L - 1 nodes
# of a round are tested in one batched call and the bisection path is replayed through them, so
# the result is the one sequential bisection gives, to the final bracket's relative width
# _EDGE_RTOL: 4 rounds (16 levels) instead of 36 sequential calls; one config costs per-call
# overhead, not arithmetic. (Taking the first unstable node instead would find unstable
# slivers that bisection steps over, lowering ~20% of the edges at mu >= 0.9, K_c/K = 2.5.)
_EDGE_RTOL = 1e-5
_EDGE_LEVELS = 4
_GROUP_MIN = 4096  # configs above which `_piecewise_pair` runs per distinct K_ref
# Refresh intervals above _LONG_LAG use the long-lag kernel (`_piecewise_pair_long`): the plain
# product of S loses eta K_c to rounding in 1 + mu - eta K_c once eta ~ 1/K_ref is tiny (relative
# error ~ 1e-16 K_ref / (eta K_c K_ref): 1e-4 at K_ref = 1e12). Above _TOL_LAG the stability
# tolerance is taken per refresh period, |lambda| < 1 - _TOL_LAG * _STABLE_TOL, not per step: a
# per-step radius |lambda|^(1/K_ref) within 1e-12 of 1 is every stable radius once
# K_ref >= 1e9, so the edge collapsed to the scan's bottom (K_ref 1e10: 1e-13 for 2e-10).
_LONG_LAG = 4096
_TOL_LAG = 100_000
_N_HORIZON_BISECT = 12  # bracket [settling-radius edge, asymptotic edge] to 1/4096 of it


def _piecewise_pair(
    a: Any, mu: Any, rc: Any, kref: Any
) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128]]:
    """Dominant and second Floquet multiplier of ``S^{K_ref} R``, in one pass.

    S acts on (e_k, e_{k-1}) as the affine map ``v -> A v + e_old b``; powers are taken by
    binary exponentiation on the six entries (A, b) elementwise, which is ~10x faster than
    batched 3x3 matmul for 10^6 configs.
    """
    a, mu, rc, kref = np.broadcast_arrays(a, mu, rc, kref)
    shape = a.shape
    a, mu, rc, kref = (np.ascontiguousarray(v).ravel() for v in (a, mu, rc, kref))
    k_max = int(kref.max()) if kref.size else 0
    if k_max > _LONG_LAG:
        long = kref > _LONG_LAG
        dom_all, sub_all = np.empty(a.size, np.complex128), np.empty(a.size, np.complex128)
        for idx, kernel in ((np.flatnonzero(long), _piecewise_pair_long),
                            (np.flatnonzero(~long), _piecewise_pair)):
            if idx.size:
                dom_all[idx], sub_all[idx] = kernel(a[idx], mu[idx], rc[idx], kref[idx])
        return dom_all.reshape(shape), sub_all.reshape(shape)
    uniform = kref.size > 0 and int(kref.min()) == k_max  # one K_ref: no per-entry selects
    if not uniform and kref.size > _GROUP_MIN and 0 < int(kref.min()) and k_max < 2**16:
        # many configs: one uniform pass per distinct K_ref (no selects; ~3x faster at 10^6)
        order = np.argsort(kref, kind="stable")
        cuts = np.flatnonzero(np.diff(kref[order])) + 1
        dom_all, sub_all = np.empty(a.size, np.complex128), np.empty(a.size, np.complex128)
        for idx in np.split(order, cuts):
            d, s = _piecewise_pair(a[idx], mu[idx], rc[idx], kref[idx])
            dom_all[idx], sub_all[idx] = d, s
        return dom_all.reshape(shape), sub_all.reshape(shape)
    one, zero = np.ones_like(a), np.zeros_like(a)
    base = (1.0 + mu - a * rc, -mu, one, zero, -a * (1.0 - rc), zero)  # A00 A01 A10 A11 b0 b1
    acc: tuple[FloatArray, ...] | None = None  # None: the identity map
    with np.errstate(all="ignore"):
        for bit in range(k_max.bit_length()):
            if uniform:
                if (k_max >> bit) & 1:
                    acc = base if acc is None else _affine_compose(acc, base)
            else:
                sel = ((kref >> bit) & 1).astype(bool)
                if sel.any():
                    if acc is None:
                        acc = (one, zero, zero, one, zero, zero)
                    prod = _affine_compose(acc, base)
                    acc = tuple(np.where(sel, p, q) for p, q in zip(prod, acc, strict=True))
            if bit + 1 < k_max.bit_length():
                base = _affine_compose(base, base)
        if acc is None:
            acc = (one, zero, zero, one, zero, zero)
        # M = S^K R has a zero third column, so its nonzero spectrum is that of the 2x2 block
        # [[A00 + b0, A01], [A10 + b1, A11]].
        m00, m01, m10, m11 = acc[0] + acc[4], acc[1], acc[2] + acc[5], acc[3]
        dom, sub = _eigen_pair(m00, m01, m10, m11)
    return dom.reshape(shape), sub.reshape(shape)


def _eigen_pair(m00: FloatArray, m01: FloatArray, m10: FloatArray, m11: FloatArray
                ) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128]]:
    """Eigenvalues of the 2x2 matrices ``[[m00, m01], [m10, m11]]``, the larger modulus first
    (a non-finite one reads inf)."""
    with np.errstate(all="ignore"):
        tr, det = m00 + m11, m00 * m11 - m01 * m10
        disc = np.sqrt((tr * tr - 4.0 * det).astype(np.complex128))
        l1, l2 = (tr + disc) / 2.0, (tr - disc) / 2.0
        first = np.abs(l1) >= np.abs(l2)
        dom, sub = np.where(first, l1, l2), np.where(first, l2, l1)
    dom = np.where(np.isfinite(dom), dom, np.inf + 0j)
    sub = np.where(np.isfinite(sub), sub, np.inf + 0j)
    return dom, sub


def _piecewise_multiplier(
    a: Any, mu: Any, rc: Any, kref: Any, *, second: bool = False
) -> npt.NDArray[np.complex128]:
    """Dominant (or, with ``second``, the other) Floquet multiplier of ``S^{K_ref} R``."""
    return _piecewise_pair(a, mu, rc, kref)[1 if second else 0]


def _piecewise_pair_long(
    a: FloatArray, mu: FloatArray, rc: FloatArray, kref: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128]]:
    """`_piecewise_pair` for long refresh intervals, without cancellation (flat arrays).

    S is written in the eigenbasis ``V = [[1, mu], [1, 1]]`` of its ``eta = 0`` part (eigenvalues
    1 and mu), as ``T = V^-1 A V = I + Y`` with ``c = eta K_c / (1 - mu)``:
    ``Y = [[-c, -c mu], [c, mu - 1 + c mu]]``, ``b' = V^-1 b = -eta K_o / (1 - mu) (1, -1)``.
    Powers compose as ``(I + Y)(I + Z) = I + (Y + Z + Y Z)``, so the slow mode's small
    ``z^n - 1`` is summed from small terms and never rounded against 1. The monodromy in that
    basis, ``T^K + b'_K (1, mu)`` (similar to ``S^K R``'s 2x2 block), gives the multipliers.
    """
    one_mu = 1.0 - mu
    c = a * rc / one_mu
    g = -a * (1.0 - rc) / one_mu
    base = (-c, -c * mu, c, -one_mu + c * mu, g, -g)  # Y00 Y01 Y10 Y11 b0 b1
    zero = np.zeros_like(a)
    acc = (zero, zero, zero, zero, zero, zero)  # the identity map
    k_max = int(kref.max())
    with np.errstate(all="ignore"):
        for bit in range(k_max.bit_length()):
            sel = ((kref >> bit) & 1).astype(bool)
            if sel.any():
                prod = _near_identity_compose(acc, base)
                acc = tuple(np.where(sel, p, q) for p, q in zip(prod, acc, strict=True))
            if bit + 1 < k_max.bit_length():
                base = _near_identity_compose(base, base)
        y00, y01, y10, y11, b0, b1 = acc
        m00, m01 = 1.0 + y00 + b0, y01 + mu * b0
        m10, m11 = y10 + b1, 1.0 + y11 + mu * b1
    return _eigen_pair(m00, m01, m10, m11)


def _near_identity_compose(
    p: tuple[FloatArray, ...], q: tuple[FloatArray, ...]
) -> tuple[FloatArray, ...]:
    """(I + Y_p, b_p) o (I + Y_q, b_q) as (Y_p + Y_q + Y_p Y_q, b_q + Y_p b_q + b_p).

    The products are `_affine_compose` of the deviations; the identity parts are added apart,
    so the small Y never meets a 1 in a sum.
    """
    prod = _affine_compose(p, q)
    return (p[0] + q[0] + prod[0], p[1] + q[1] + prod[1], p[2] + q[2] + prod[2],
            p[3] + q[3] + prod[3], q[4] + prod[4], q[5] + prod[5])


def _affine_compose(
    p: tuple[FloatArray, ...], q: tuple[FloatArray, ...]
) -> tuple[FloatArray, ...]:
    """(A_p, b_p) o (A_q, b_q) = (A_p A_q, A_p b_q + b_p) for the (e_k, e_{k-1}) affine maps."""
    p00, p01, p10, p11, pb0, pb1 = p
    q00, q01, q10, q11, qb0, qb1 = q
    return (
        p00 * q00 + p01 * q10, p00 * q01 + p01 * q11,
        p10 * q00 + p11 * q10, p10 * q01 + p11 * q11,
        p00 * qb0 + p01 * qb1 + pb0, p10 * qb0 + p11 * qb1 + pb1,
    )


def _sliding_roots_batch(
    a: Any, mu: Any, rc: Any, lag: Any
) -> tuple[npt.NDArray[np.complex128], FloatArray, FloatArray]:
    """Dominant root, spectral radius and radius of the oscillating roots per config.

    Roots are companion-matrix eigenvalues, batched by lag. "Oscillating" means any root that is
    not real and positive (complex, or negative real).
    """
    a, mu, rc, lag = np.broadcast_arrays(a, mu, rc, lag)
    shape = a.shape
    a, mu, rc, lag = (np.ascontiguousarray(v).ravel() for v in (a, mu, rc, lag))
    dom = np.empty(a.size, np.complex128)
    rho, rho_osc = np.empty(a.size), np.empty(a.size)
    for d in np.unique(lag):
        idx = np.flatnonzero(lag == d)
        deg = int(d) + 1 if d > 0 else 2
        comp = np.zeros((idx.size, deg, deg))
        comp[:, np.arange(1, deg), np.arange(deg - 1)] = 1.0  # sub-diagonal shift
        if d == 0:
            comp[:, 0, 0], comp[:, 0, 1] = 1.0 + mu[idx] - a[idx], -mu[idx]
        else:
            comp[:, 0, 0] = 1.0 + mu[idx] - a[idx] * rc[idx]
            comp[:, 0, 1] = -mu[idx]
            comp[:, 0, deg - 1] -= a[idx] * (1.0 - rc[idx])
        roots = np.linalg.eigvals(comp)
        mod = np.abs(roots)
        dom[idx] = np.take_along_axis(roots, mod.argmax(1)[:, None], 1)[:, 0]
        rho[idx] = mod.max(1)
        osc = (np.abs(roots.imag) > 1e-9 * np.maximum(mod, 1e-300)) | (roots.real < 0)
        rho_osc[idx] = np.where(osc, mod, 0.0).max(1)
    return dom.reshape(shape), rho.reshape(shape), rho_osc.reshape(shape)


def _radii(a: Any, mu: Any, rc: Any, lag: Any, scheme: str) -> tuple[FloatArray, FloatArray]:
    """Per-step spectral radius, and the radius of the oscillating multipliers only."""
    if scheme == "sliding":
        _, rho, rho_osc = _sliding_roots_batch(a, mu, rc, lag)
        return rho, rho_osc
    l1, l2 = _piecewise_pair(a, mu, rc, lag)
    with np.errstate(all="ignore"):
        r1, r2 = np.abs(l1) ** (1.0 / lag), np.abs(l2) ** (1.0 / lag)
    osc1 = (np.abs(l1.imag) > 0) | (l1.real < 0)
    osc2 = (np.abs(l2.imag) > 0) | (l2.real < 0)
    rho_osc = np.maximum(np.where(osc1, r1, 0.0), np.where(osc2, r2, 0.0))
    return np.where(np.isfinite(r1), r1, np.inf), np.where(np.isfinite(rho_osc), rho_osc, np.inf)


def _is_stable(a: Any, mu: Any, rc: Any, lag: Any, scheme: str, rho_osc_max: float = 1.0,
               fast: bool = False) -> Any:
    """Linear stability; with ``rho_osc_max < 1`` oscillating modes must also settle.

    ``fast`` decides asymptotic sliding-lag stability by the Schur-Cohn test (`_schur`, ~30x
    faster than the companion eigenvalues; the two agree except within rounding of |z| = 1).
    """
    if fast and scheme == "sliding" and rho_osc_max >= 1.0:
        a, mu = np.broadcast_arrays(a, mu)
        return sliding_stable(a, mu, rc, lag) & (a < 2.0 * (1.0 + mu))
    if scheme == "piecewise" and int(np.max(lag, initial=0)) > _TOL_LAG:
        return _is_stable_long(a, mu, rc, lag, rho_osc_max)
    rho, rho_osc = _radii(a, mu, rc, lag, scheme)
    return (rho < 1.0 - _STABLE_TOL) & (rho_osc < rho_osc_max) & (a < 2.0 * (1.0 + mu))


def _is_stable_long(a: Any, mu: Any, rc: Any, lag: Any, rho_osc_max: float) -> Any:
    """`_is_stable` (piecewise) with the tolerances taken per refresh period.

    Up to ``_TOL_LAG`` the per-step test ``|lambda|^(1/K_ref) < 1 - _STABLE_TOL`` is kept, as
    ``|lambda| < (1 - _STABLE_TOL)^K_ref``; beyond, ``|lambda| < 1 - _TOL_LAG _STABLE_TOL``
    (1e-7: edges of a transversal crossing move by ~1e-7 relative). Oscillating multipliers
    must satisfy ``|lambda| < rho_osc_max^K_ref`` (the per-step radius, in the period domain).
    """
    a, mu, rc, lag = np.broadcast_arrays(a, mu, rc, lag)
    l1, l2 = _piecewise_pair(a, mu, rc, lag)
    lag_f = lag.astype(float)
    with np.errstate(all="ignore"):
        tol = np.where(lag_f > _TOL_LAG, 1.0 - _TOL_LAG * _STABLE_TOL,
                       np.exp(lag_f * math.log1p(-_STABLE_TOL)))
        osc_max = np.exp(lag_f * math.log(rho_osc_max)) if rho_osc_max < 1.0 else 1.0
    r1, r2 = np.abs(l1), np.abs(l2)
    osc1 = (np.abs(l1.imag) > 0) | (l1.real < 0)
    osc2 = (np.abs(l2.imag) > 0) | (l2.real < 0)
    rho_osc = np.maximum(np.where(osc1, r1, 0.0), np.where(osc2, r2, 0.0))
    return (r1 < tol) & (rho_osc < osc_max) & (a < 2.0 * (1.0 + mu))


def _is_stable_within(a: Any, mu: Any, rc: Any, lag: Any, scheme: str,
                      horizon_steps: int | None, fast: bool = False) -> Any:
    """Pointwise `_is_stable` with the horizon rule of `critical_rate` (flat arrays).

    Asymptotically stable configurations whose oscillating modes are slower than
    `settling_radius` are decided by their linear trajectory (``_settles``).
    """
    stable = _is_stable(a, mu, rc, lag, scheme, fast=fast)
    if horizon_steps is None:
        return stable
    a, mu, rc, lag = (np.ascontiguousarray(v).ravel()
                      for v in np.broadcast_arrays(a, mu, rc, lag))
    stable = np.ascontiguousarray(stable).ravel()
    band = np.flatnonzero(stable & ~_is_stable(a, mu, rc, lag, scheme,
                                               settling_radius(horizon_steps)))
    if band.size:
        stable[band] = _settles(a[band], mu[band], rc[band], lag[band], scheme, horizon_steps)
    return stable


def settling_radius(horizon_steps: int, *, tolerance: float = 0.01) -> float:
    """Largest per-step radius of an oscillating mode that settles within a horizon.

    A mode settles when it has decayed to ``tolerance`` of the initial gap by 90% of the run,
    ``rho^(0.9 N) <= tolerance`` (the convergence rule of bandit-findings.md section 5).

    Example:
        >>> round(settling_radius(2000), 5)
        0.99744
    """
    n = check_int("horizon_steps", horizon_steps, low=1)
    tol = check_interval("tolerance", tolerance, low=0.0, high=1.0, low_closed=False,
                         high_closed=False)
    return float(tol ** (1.0 / (0.9 * n)))


def _first_edge(mu: FloatArray, lag: npt.NDArray[np.int64], rc: FloatArray, scheme: str,
                rho_max: float, rtol: float = _EDGE_RTOL, fast: bool = False) -> FloatArray:
    """Scan + batched bisection of the first unstable ``a`` per config (flat arrays).

    The result is unstable and a stable point lies within a relative ``rtol`` below it, inside
    the first unstable scan cell; it equals sequential bisection's result to ``rtol``.
    """
    hi = 2.0 * (1.0 + mu)
    lo = 1e-3 * (1.0 - mu) / np.maximum(lag, 1)
    t = np.linspace(0.0, 1.0, _N_SCAN)
    grid = lo[:, None] * (hi / lo)[:, None] ** t[None, :]  # (n, N_SCAN)
    bad = ~_is_stable(grid, mu[:, None], rc[:, None], lag[:, None], scheme, rho_max, fast)
    first = np.where(bad.any(1), bad.argmax(1), _N_SCAN)
    result = hi.copy()
    inner = (first > 0) & (first < _N_SCAN)
    result[first == 0] = lo[first == 0]
    if inner.any():
        rows = np.flatnonzero(inner)
        left, right = grid[rows, first[rows] - 1], grid[rows, first[rows]]
        # levels per call: many configs are arithmetic-bound (1 node per level), few are
        # call-bound (15 nodes for 4 levels); the path, hence the result, is the same
        levels = _EDGE_LEVELS if rows.size <= 512 else (2 if rows.size <= 4096 else 1)
        n_sub = 2 ** levels
        frac = np.arange(n_sub + 1) / n_sub
        at = np.arange(rows.size)
        m, r, g = mu[rows, None], rc[rows, None], lag[rows, None]
        while float(np.log(right / left).max()) > rtol:
            # the 2^L - 1 interior nodes of L bisection levels, tested in one batched call
            ladder = left[:, None] * (right / left)[:, None] ** frac[None, :]
            ladder[:, 0], ladder[:, -1] = left, right
            ok = np.ones(ladder.shape, bool)
            ok[:, 1:-1] = _is_stable(ladder[:, 1:-1], m, r, g, scheme, rho_max, fast)
            lo, hi = np.zeros(rows.size, np.int64), np.full(rows.size, n_sub)
            for _ in range(levels):  # replay the bisection path through the nodes
                mid = (lo + hi) // 2
                st = ok[at, mid]
                lo, hi = np.where(st, mid, lo), np.where(st, hi, mid)
            left, right = ladder[at, lo], ladder[at, hi]
        result[rows] = right
    return result


def _asymptotic_edge(mu: FloatArray, lag: npt.NDArray[np.int64], rc: FloatArray, scheme: str,
                     rtol: float, fast: bool) -> FloatArray:
    """First edge of asymptotic stability (flat arrays).

    Sliding lag: the boundary locus (`advisor.stability._boundary`), which finds the first
    crossing of the unit circle even where an unstable band is narrower than a scan cell; the
    few configurations it cannot confirm are scanned and bisected. Piecewise: `_first_edge`.
    """
    if scheme != "sliding" or mu.size == 0:
        return _first_edge(mu, lag, rc, scheme, 1.0, rtol, fast)
    a, confirmed = sliding_edge(mu, rc, lag)
    if not confirmed.all():
        miss = np.flatnonzero(~confirmed)
        a[miss] = _first_edge(mu[miss], lag[miss], rc[miss], scheme, 1.0, rtol, fast)
    return a


def critical_rate(
    momentum: Any,
    lag: Any,
    *,
    current_fraction: Any = 0.0,
    refresh_scheme: Scheme = "piecewise",
    horizon_steps: int | None = None,
    rtol: float = _EDGE_RTOL,
) -> FloatArray:
    """Exact critical per-step rate ``a* = eta* K`` of the linearised update, vectorised.

    Piecewise refresh: scans a log grid of ``a`` below the on-policy bound ``2(1 + mu)`` and
    bisects the first unstable cell (4 levels per batched call), so the result is the edge of
    the stable region that contains ``a -> 0``, from above within ``rtol``. Sliding lag: the
    smallest rate at which a root meets the unit circle (the boundary locus of
    `advisor.stability._boundary`, checked by the Schur-Cohn test on both sides; unconfirmed
    configurations are scanned and bisected), which also finds unstable bands narrower than a
    scan cell.

    With a horizon the edge lies between the rate where the slowest oscillating mode decays by
    ``settling_radius`` (a unit-amplitude bound, conservative) and the asymptotic edge; it is
    then bisected on the linear trajectory itself, classified by the same horizon rule as the
    bandit ground truth (``_settles``), in ``_N_HORIZON_BISECT`` steps.

    Args:
        momentum: Heavy-ball momentum mu in [0, 1), array-like.
        lag: Refresh interval K_ref >= 1 (piecewise) or sliding lag d >= 0, integer array-like.
        current_fraction: K_c / K, the current-policy share of the stiffness (0 = pure delay).
        refresh_scheme: ``"piecewise"`` (GRPO refresh every K_ref steps) or ``"sliding"``.
        horizon_steps: If given, an oscillating mode must also settle within this many steps;
            slow monotone relaxation is never called unstable.
        rtol: Relative width of the final bracket (the result is its unstable end). The default
            1e-5 takes 4 rounds per config; each further factor 16 of precision costs one.

    Returns:
        ``a*`` broadcast to the common shape of the inputs.

    Example:
        >>> round(float(critical_rate(0.0, 4)[()]), 6)  # pure delay, mu = 0: eta K K_ref < 2
        0.5
    """
    check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
    rtol = check_interval("rtol", rtol, low=1e-13, high=0.1)
    n_steps = None if horizon_steps is None else check_int("horizon_steps", horizon_steps, low=1)
    mu, lag_arr = _check_momentum_lag(momentum, lag, 1 if refresh_scheme == "piecewise" else 0)
    rc = as_float_array("current_fraction", current_fraction,
                        hint="It is K_c / K of the stiffness estimate.")
    return _critical_rate(mu, lag_arr, rc, refresh_scheme, n_steps, rtol)


def _check_momentum_lag(momentum: Any, lag: Any, low: int, what: str = ""
                        ) -> tuple[FloatArray, FloatArray]:
    """Momentum in [0, 1) and an integer-valued lag >= ``low``, as float arrays."""
    mu = as_float_array("momentum", momentum, low=0.0, high=1.0, high_closed=False,
                        hint="Heavy-ball momentum; for AdamW pass 0 (adam_beta1 does not enter).")
    what = what or ("refresh interval K_ref" if low == 1 else "sliding lag d")
    lag_arr = as_float_array("lag", lag, low=float(low), hint=f"It is the {what}.")
    if not np.all(lag_arr == np.rint(lag_arr)):
        flat = lag_arr.ravel()
        bad = float(flat[np.flatnonzero(flat != np.rint(flat))[0]])
        raise ValueError(f"`lag` must be a whole number of optimizer steps, got {bad:g}. Round "
                         f"the {what} yourself (up is the cautious choice).")
    return mu, lag_arr


def _critical_rate(momentum: Any, lag: Any, current_fraction: Any, refresh_scheme: str,
                   n_steps: int | None, rtol: float = _EDGE_RTOL, fast: bool = False
                   ) -> FloatArray:
    """`critical_rate` without validation; ``fast``: the Schur-Cohn sliding kernel."""
    mu, lag_arr, rc = np.broadcast_arrays(
        np.asarray(momentum, float), np.asarray(lag), np.asarray(current_fraction, float)
    )
    lag_arr = np.asarray(np.rint(lag_arr), np.int64)
    shape = mu.shape
    mu, lag_arr, rc = (np.ascontiguousarray(v).ravel() for v in (mu, lag_arr, rc))
    if n_steps is None:
        return _asymptotic_edge(mu, lag_arr, rc, refresh_scheme, rtol, fast).reshape(shape)
    low = _first_edge(mu, lag_arr, rc, refresh_scheme, settling_radius(n_steps), rtol)
    high = _asymptotic_edge(mu, lag_arr, rc, refresh_scheme, rtol, fast)
    rows = np.flatnonzero(low < high)
    if rows.size:
        left, right = low[rows], high[rows]
        for _ in range(_N_HORIZON_BISECT):
            mid = np.sqrt(left * right)
            st = _settles(mid, mu[rows], rc[rows], lag_arr[rows], refresh_scheme, n_steps)
            left, right = np.where(st, mid, left), np.where(st, right, mid)
        low[rows] = right
    return low.reshape(shape)


def closed_form_rate(momentum: Any, lag: Any) -> FloatArray:
    """The paper's closed-form edge ``eta K K_ref = 1 - mu`` as ``a* = (1 - mu) / K_ref``.

    Kept for comparison only (arXiv 2606.30789, Proposition 9); a lag of 0 gives ``inf``.

    Example:
        >>> round(float(closed_form_rate(0.8, 4)[()]), 6)
        0.05
    """
    return _closed_form(*_check_momentum_lag(momentum, lag, 0,
                                             "refresh interval K_ref (0: on-policy)"))


def _closed_form(momentum: Any, lag: Any) -> FloatArray:
    """`closed_form_rate` without validation (the model's already checked arrays)."""
    mu, lag_arr = np.broadcast_arrays(np.asarray(momentum, float), np.asarray(lag, float))
    with np.errstate(divide="ignore"):
        return np.where(lag_arr > 0, (1.0 - mu) / np.where(lag_arr > 0, lag_arr, 1.0), np.inf)


def _pure_delay_sliding_rate(lag: float, momentum: float) -> float:
    """Semi-closed form of the pure-delay sliding edge (bandit-findings.md section 4)."""
    from scipy.optimize import brentq

    def phase(w: float) -> float:
        return (lag - 0.5) * w + math.atan2(math.sin(w), math.cos(w) - momentum) - math.pi / 2

    w = brentq(phase, 1e-12, math.pi - 1e-12)
    return 2.0 * math.sin(w / 2.0) * abs(complex(math.cos(w) - momentum, math.sin(w)))


def _damping_and_time_log(s1: Any, s2: Any) -> tuple[FloatArray, FloatArray]:
    """Damping ratio and time constant (steps) from the logs ``s = ln z`` of the two multipliers.

    A complex (or negative) dominant multiplier ``z = exp(s)`` gives ``zeta = -Re s / |s|``; two
    real positive ones give the overdamped ``zeta = -(s1 + s2) / (2 sqrt(s1 s2)) >= 1``
    (``inf`` for a first-order mode). The time constant is ``-1 / ln|z_dom|``.
    """
    s1, s2 = np.asarray(s1, np.complex128), np.asarray(s2, np.complex128)
    with np.errstate(all="ignore"):
        osc = np.abs(s1.imag) > 1e-12
        zeta_osc = -s1.real / np.abs(s1)
        l1, l2 = s1.real, s2.real
        zeta_real = np.where(np.isfinite(l2), -(l1 + l2) / (2.0 * np.sqrt(l1 * l2)), np.inf)
        zeta = np.where(osc, zeta_osc, zeta_real)
        tau = np.where(l1 < 0, -1.0 / l1, np.inf)
    return np.asarray(zeta, float), np.asarray(tau, float)


def _log_multiplier_pair(
    a: Any, mu: Any, rc: Any, lag: Any
) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128]]:
    """Logs ``ln(lambda) / K_ref`` of the two largest per-step multipliers (piecewise refresh).

    The per-step multiplier is ``lambda^(1/K_ref)`` of the Floquet multiplier; its log is taken
    directly (no complex powers).
    """
    a, mu, rc, lag = np.broadcast_arrays(a, mu, rc, lag)
    lam1, lam2 = _piecewise_pair(a, mu, rc, lag)
    with np.errstate(all="ignore"):
        return np.log(lam1) / lag, np.log(lam2) / lag


def _regime_of(zeta: FloatArray, stable: Any) -> npt.NDArray[np.object_]:
    """Regime from the dominant damping ratio, calibrated to a 1% dead zone.

    A mode released from rest overshoots visibly (> 1% of the rise) iff zeta < 0.826 and crosses
    back visibly iff zeta < 0.591 (``proto/linear_theory.zeta_class``; bandit-findings.md 5).
    """
    codes = np.where(zeta < 0.591, 2, np.where(zeta < 0.826, 1, 0))
    codes = np.where(stable, codes, 3)
    table = np.array([Regime.MONOTONE, Regime.OVERSHOOT, Regime.OSCILLATORY, Regime.DIVERGENT],
                     dtype=object)
    return np.asarray(table[codes], dtype=object)

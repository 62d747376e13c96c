"""Stability of GRPO training: an exact linear theory layer and a measured calibration layer.

Conventions (symbols used by the private kernels; arrays broadcast over configs, shape ``(n,)``):
    eta    learning rate; K stiffness (relaxation rate of the mean reward per unit lr);
    K_c, K_o = current-policy / sampling-policy parts of K (K = K_c + K_o); rc = K_c / K;
    a      = eta * K, the dimensionless per-step rate at zero momentum;
    mu     heavy-ball momentum (0 for AdamW: adam_beta1 is an EMA and does not enter);
    x      = eta * K / (1 - mu), the rate in heavy-ball units; x* is the critical value (the edge);
    K_ref  refresh interval (piecewise scheme); d = sliding lag.

**Theory layer.** The update linearised at the fixed point is

.. math::
    e_{k+1} = (1 + \\mu - \\eta K_c) e_k - \\mu e_{k-1} - \\eta K_o e_{old}(k).

Sliding lag ``e_old = e_{k-d}``: stable iff every root of
``z^{d+1} - (1+mu-eta K_c) z^d + mu z^{d-1} + eta K_o`` lies inside the unit circle.
Piecewise refresh every K_ref steps (GRPO): stable iff the Floquet monodromy ``S^{K_ref} R`` has
spectral radius < 1, with ``S = [[1+mu-eta K_c, -mu, -eta K_o], [1,0,0], [0,0,1]]`` and ``R``
copying e_k into e_old. The on-policy bound ``eta K < 2(1+mu)`` always applies; with a training
horizon, oscillating modes must also settle within it. Where the linear test is known to
over-predict (importance-ratio surrogate, piecewise refresh: 1.4-2.4x at mu >= 0.5,
bandit-findings.md section 9) a known bandit is simulated, otherwise a safety factor applies.
With more than one mode (bandits with > 2 arms) a single (K, K_c) cannot be exact: the pilot
measures the slowest excited mode, the stiffest sets the edge (off 0.25-70x in the benchmark), so a
known bandit is then simulated over the whole settling range.

**Calibration layer.** A measured edge x*_0 (pilot lr scan) transfers as
``x*(B, K_ref, n_it) = x*_0 (B/B_0)^a (K_ref/K_ref0)^b n_it^(-1/3)``; the verdict is the tighter
layer. References: arXiv 2606.30789 (closed form), research notes theory.md sections 2 and 6.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.dynamics import Regime
from advisor.exceptions import AdvisorWarning


__all__ = ["EdgeEstimate", "StabilityModel", "Verdict", "critical_rate", "closed_form_rate",
           "settling_radius"]

FloatArray = npt.NDArray[np.float64]
Scheme = Literal["piecewise", "sliding"]
Method = Literal["auto", "theory", "exact", "closed_form", "calibrated"]

_STABLE_TOL = 1e-12
_N_SCAN = 48  # log-spaced scan points per config before bisection (ratio ~1.2 between points)
_N_BISECT = 36
_N_SIM = 25  # simulated scan points over [eta_lin / 16, eta_lin] in the nonlinear check
# Model-error floor of the theory layer: exact linear thresholds match the bandit within 0-4%.
_THEORY_SIGMA = 0.05
# Spread of the 1.4-2.4x nonlinear over-prediction that the safety factor replaces.
_SAFETY_SIGMA = 0.3
# Default transfer exponents (real-trl-findings.md sections 4, 6, 9): the batch exponent was
# measured 0.4-0.9 across tasks, the steps_per_generation slope 0.14-0.39. Each default is the
# end of the measured range that predicts the LOWER edge in the direction of extrapolation.
_BATCH_EXPONENT_UP, _BATCH_EXPONENT_DOWN = 0.4, 1.0
_REFRESH_EXPONENT_UP, _REFRESH_EXPONENT_DOWN = 0.0, 0.4
_REUSE_EXPONENT = -1.0 / 3.0  # num_iterations reuse: about 0.5x at 8 (Adam 0.46x, SGD 0.52x at 4)
_EXPONENT_SIGMA = 0.25  # uncertainty per unit |log ratio| of an extrapolated condition


# ------------------------------------------------------------------------------------------
# theory kernels (vectorised)
# ------------------------------------------------------------------------------------------
def _piecewise_multiplier(
    a: Any, mu: Any, rc: Any, kref: Any, *, second: bool = False
) -> npt.NDArray[np.complex128]:
    """Dominant (or, with ``second``, the other) Floquet multiplier of ``S^{K_ref} R``.

    S acts on (e_k, e_{k-1}) as the affine map ``v -> A v + e_old b``; powers are taken by
    binary exponentiation on the six entries (A, b) elementwise, which is ~10x faster than
    batched 3x3 matmul for 10^6 configs.
    """
    a, mu, rc, kref = np.broadcast_arrays(a, mu, rc, kref)
    shape = a.shape
    a, mu, rc, kref = (np.ascontiguousarray(v).ravel() for v in (a, mu, rc, kref))
    one, zero = np.ones_like(a), np.zeros_like(a)
    base = (1.0 + mu - a * rc, -mu, one, zero, -a * (1.0 - rc), zero)  # A00 A01 A10 A11 b0 b1
    acc = (one, zero, zero, one, zero, zero)
    with np.errstate(all="ignore"):
        for bit in range(int(kref.max()).bit_length()):
            sel = ((kref >> bit) & 1).astype(bool)
            if sel.any():
                prod = _affine_compose(acc, base)
                acc = tuple(np.where(sel, p, q) for p, q in zip(prod, acc, strict=True))
            base = _affine_compose(base, base)
        # M = S^K R has a zero third column, so its nonzero spectrum is that of the 2x2 block
        # [[A00 + b0, A01], [A10 + b1, A11]].
        m00, m01, m10, m11 = acc[0] + acc[4], acc[1], acc[2] + acc[5], acc[3]
        tr, det = m00 + m11, m00 * m11 - m01 * m10
        disc = np.sqrt((tr * tr - 4.0 * det).astype(np.complex128))
        l1, l2 = (tr + disc) / 2.0, (tr - disc) / 2.0
        first = np.abs(l1) >= np.abs(l2)
        lam = np.where(first != second, l1, l2)
    lam = np.where(np.isfinite(lam), lam, np.inf + 0j)
    return lam.reshape(shape)


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


def _sliding_roots(a: float, mu: float, rc: float, d: int) -> npt.NDArray[np.complex128]:
    """Roots of the sliding-lag characteristic polynomial (degree d+1; d=0 is on-policy)."""
    if d == 0:
        return np.roots([1.0, -(1.0 + mu - a), mu])
    c = np.zeros(d + 2)
    c[0], c[1], c[2] = 1.0, -(1.0 + mu - a * rc), mu
    c[-1] += a * (1.0 - rc)
    return np.roots(c)


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
    l1 = _piecewise_multiplier(a, mu, rc, lag)
    l2 = _piecewise_multiplier(a, mu, rc, lag, second=True)
    with np.errstate(all="ignore"):
        r1, r2 = np.abs(l1) ** (1.0 / lag), np.abs(l2) ** (1.0 / lag)
    osc1 = (np.abs(l1.imag) > 0) | (l1.real < 0)
    osc2 = (np.abs(l2.imag) > 0) | (l2.real < 0)
    rho_osc = np.maximum(np.where(osc1, r1, 0.0), np.where(osc2, r2, 0.0))
    return np.where(np.isfinite(r1), r1, np.inf), np.where(np.isfinite(rho_osc), rho_osc, np.inf)


def _is_stable(a: Any, mu: Any, rc: Any, lag: Any, scheme: str, rho_osc_max: float = 1.0
               ) -> Any:
    """Linear stability; with ``rho_osc_max < 1`` oscillating modes must also settle."""
    rho, rho_osc = _radii(a, mu, rc, lag, scheme)
    return (rho < 1.0 - _STABLE_TOL) & (rho_osc < rho_osc_max) & (a < 2.0 * (1.0 + mu))


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


def critical_rate(
    momentum: Any,
    lag: Any,
    *,
    current_fraction: Any = 0.0,
    refresh_scheme: Scheme = "piecewise",
    horizon_steps: int | None = None,
) -> FloatArray:
    """Exact critical per-step rate ``a* = eta* K`` of the linearised update, vectorised.

    Scans a log grid of ``a`` below the on-policy bound ``2(1 + mu)`` and bisects the first
    unstable cell, so the result is the edge of the stable region that contains ``a -> 0``.

    Args:
        momentum: Heavy-ball momentum mu in [0, 1), array-like.
        lag: Refresh interval K_ref >= 1 (piecewise) or sliding lag d >= 0, integer array-like.
        current_fraction: K_c / K, the current-policy share of the stiffness (0 = pure delay).
        refresh_scheme: ``"piecewise"`` (GRPO refresh every K_ref steps) or ``"sliding"``.
        horizon_steps: If given, an oscillating mode must also settle within this many steps
            (`settling_radius`); slow monotone relaxation is never called unstable.

    Returns:
        ``a*`` broadcast to the common shape of the inputs.

    Example:
        >>> round(float(critical_rate(0.0, 4)[()]), 6)  # pure delay, mu = 0: eta K K_ref < 2
        0.5
    """
    check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
    rho_max = 1.0 if horizon_steps is None else settling_radius(horizon_steps)
    mu, lag_arr, rc = np.broadcast_arrays(
        np.asarray(momentum, float), np.asarray(lag), np.asarray(current_fraction, float)
    )
    lag_arr = np.asarray(np.rint(lag_arr), np.int64)
    shape = mu.shape
    mu, lag_arr, rc = (np.ascontiguousarray(v).ravel() for v in (mu, lag_arr, rc))
    hi = 2.0 * (1.0 + mu)
    lo = 1e-3 * (1.0 - mu) / np.maximum(lag_arr, 1)
    t = np.linspace(0.0, 1.0, _N_SCAN)
    grid = lo[:, None] * (hi / lo)[:, None] ** t[None, :]  # (n, N_SCAN)
    ok = _is_stable(grid, mu[:, None], rc[:, None], lag_arr[:, None], refresh_scheme, rho_max)
    bad = ~ok
    first = np.where(bad.any(1), bad.argmax(1), _N_SCAN)
    result = hi.copy()
    inner = (first > 0) & (first < _N_SCAN)
    result[first == 0] = lo[first == 0]
    if inner.any():
        rows = np.flatnonzero(inner)
        left, right = grid[rows, first[rows] - 1], grid[rows, first[rows]]
        for _ in range(_N_BISECT):
            mid = np.sqrt(left * right)
            st = _is_stable(mid, mu[rows], rc[rows], lag_arr[rows], refresh_scheme, rho_max)
            left, right = np.where(st, mid, left), np.where(st, right, mid)
        result[rows] = right
    return result.reshape(shape)


def closed_form_rate(momentum: Any, lag: Any) -> FloatArray:
    """The paper's closed-form edge ``eta K K_ref = 1 - mu`` as ``a* = (1 - mu) / K_ref``.

    Kept for comparison only (arXiv 2606.30789, Proposition 9); a lag of 0 gives ``inf``.

    Example:
        >>> round(float(closed_form_rate(0.8, 4)[()]), 6)
        0.05
    """
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


def _damping_and_time(z_dom: Any, z_sub: Any) -> tuple[FloatArray, FloatArray]:
    """Damping ratio and time constant (steps) of the dominant per-step multipliers.

    A complex (or negative) dominant multiplier ``z = exp(s)`` gives ``zeta = -Re s / |s|``; two
    real positive ones give the overdamped ``zeta = -(s1 + s2) / (2 sqrt(s1 s2)) >= 1``
    (``inf`` for a first-order mode). The time constant is ``-1 / ln|z_dom|``.
    """
    z1, z2 = np.asarray(z_dom, np.complex128), np.asarray(z_sub, np.complex128)
    with np.errstate(all="ignore"):
        s1 = np.log(z1)
        osc = np.abs(s1.imag) > 1e-12
        zeta_osc = -s1.real / np.abs(s1)
        l1, l2 = np.log(np.abs(z1)), np.log(np.abs(z2))
        zeta_real = np.where(np.isfinite(l2), -(l1 + l2) / (2.0 * np.sqrt(l1 * l2)), np.inf)
        zeta = np.where(osc, zeta_osc, zeta_real)
        tau = np.where(l1 < 0, -1.0 / l1, np.inf)
    return np.asarray(zeta, float), np.asarray(tau, float)


def _multiplier_pair(
    a: FloatArray, mu: FloatArray, rc: FloatArray, lag: Any, scheme: str
) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.complex128]]:
    """The two largest-modulus per-step multipliers of the linear system."""
    if scheme == "piecewise":
        a, mu, rc, lag = np.broadcast_arrays(a, mu, rc, lag)
        lam1 = _piecewise_multiplier(a, mu, rc, lag)
        # second multiplier of the 2x2 block: det / lam1 (det = product of the two)
        lam2 = _piecewise_multiplier(a, mu, rc, lag, second=True)
        with np.errstate(all="ignore"):
            return lam1 ** (1.0 / lag), lam2 ** (1.0 / lag)
    a, mu, rc, lag = (np.atleast_1d(v) for v in np.broadcast_arrays(a, mu, rc, lag))
    z1, z2 = np.empty(a.shape, np.complex128), np.empty(a.shape, np.complex128)
    for i in np.ndindex(a.shape):
        roots = _sliding_roots(float(a[i]), float(mu[i]), float(rc[i]), int(lag[i]))
        roots = roots[np.argsort(-np.abs(roots))]
        z1[i], z2[i] = roots[0], (roots[1] if roots.size > 1 else 0.0)
    return z1, z2


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


# ------------------------------------------------------------------------------------------
# calibration layer
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeEstimate:
    """A measured stability edge in dimensionless units, and how it transfers.

    The edge is the critical rate ``x* = eta* K / (1 - mu_hb)`` (``mu_hb = 0`` for AdamW) found by
    a pilot learning-rate scan, expressed with the SAME stiffness K as the `StabilityModel` that
    uses it (then K cancels and the edge's uncertainty is the bracket's). It transfers to other
    conditions as

    .. math::
        x^*(B, K_{ref}, n_{it}) = x^*_0 (B/B_0)^a (K_{ref}/K_{ref,0})^b (n_{it}/n_{it,0})^{-1/3}.

    Attributes:
        rate: Point estimate of x* at the stated conditions (> 0).
        low: Largest x that stayed stable in the scan (0 < low <= rate).
        high: Smallest x that became unstable (high >= rate).
        samples_per_step: Completions per optimizer step B_0 of the scan.
        refresh_interval: K_ref0 of the scan (optimizer steps per generation; 1 = on-policy).
        horizon_steps: Length of the scan's runs; a longer training run meets more rare collapse
            events, so the edge is an upper bound beyond it (real-trl-findings.md section 4).
        optimizer: ``"sgd"`` (heavy ball) or ``"adamw"``.
        batch_exponent: Measured ``a`` (None: conservative default, 0.4 for B > B_0 and 1.0
            below; measured 0.4-0.9 across tasks).
        refresh_exponent: Measured ``b`` (None: 0 for K_ref > K_ref0, 0.4 below; measured slopes
            +0.14 to +0.39 with TRL's steps_per_generation and the clipped ratio).
        num_iterations: ``num_iterations`` of the scan (batch reuse lowers the edge, ~0.5x at 8).
        n_runs: Runs behind the estimate (0 = unknown).

    Example:
        >>> edge = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128,
        ...                     horizon_steps=150, optimizer="sgd")
        >>> round(float(edge.predict(samples_per_step=512)[0]), 4)  # 4x batch, exponent 0.4
        0.0435
    """

    rate: float
    low: float
    high: float
    samples_per_step: float
    refresh_interval: float = 1.0
    horizon_steps: int
    optimizer: Literal["sgd", "adamw"]
    batch_exponent: float | None = None
    refresh_exponent: float | None = None
    num_iterations: int = 1
    n_runs: int = 0

    def __post_init__(self) -> None:
        setf = object.__setattr__
        setf(self, "rate", check_interval("rate", self.rate, low=0.0, low_closed=False))
        setf(self, "low", check_interval("low", self.low, low=0.0, high=self.rate,
                                         low_closed=False,
                                         hint="`low` is the last stable rate of the scan."))
        setf(self, "high", check_interval("high", self.high, low=self.rate,
                                          hint="`high` is the first unstable rate of the scan."))
        setf(self, "samples_per_step", check_interval("samples_per_step", self.samples_per_step,
                                                      low=0.0, low_closed=False))
        setf(self, "refresh_interval", check_interval("refresh_interval", self.refresh_interval,
                                                      low=1.0))
        setf(self, "horizon_steps", check_int("horizon_steps", self.horizon_steps, low=1))
        check_options("optimizer", self.optimizer, ("sgd", "adamw"))
        for name in ("batch_exponent", "refresh_exponent"):
            if getattr(self, name) is not None:
                setf(self, name, check_interval(name, getattr(self, name), low=-2.0, high=2.0))
        setf(self, "num_iterations", check_int("num_iterations", self.num_iterations, low=1))
        setf(self, "n_runs", check_int("n_runs", self.n_runs, low=0))

    @property
    def log_sigma(self) -> float:
        """Standard deviation of log x* implied by the bracket (half its log width)."""
        return 0.5 * math.log(self.high / self.low)

    def predict(
        self,
        *,
        samples_per_step: Any = None,
        refresh_interval: Any = None,
        num_iterations: Any = None,
        batch_exponent: float | None = None,
        refresh_exponent: float | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Edge x* and the standard deviation of log x* at other conditions (vectorised).

        Args:
            samples_per_step: Completions per optimizer step B (default: the scan's).
            refresh_interval: K_ref counting fresh generations only (default: the scan's).
            num_iterations: Batch reuse (default: the scan's).
            batch_exponent: Overrides the edge's (measured or default) batch exponent.
            refresh_exponent: Overrides the edge's refresh exponent.

        Returns:
            ``(rate, log_sigma)`` arrays broadcast over the inputs.

        Example:
            >>> edge = EdgeEstimate(rate=0.1, low=0.08, high=0.12, samples_per_step=64,
            ...                     horizon_steps=150, optimizer="adamw", batch_exponent=0.5)
            >>> round(float(edge.predict(samples_per_step=256)[0]), 3)
            0.2
        """
        b = np.asarray(self.samples_per_step if samples_per_step is None else samples_per_step,
                       float)
        k = np.asarray(self.refresh_interval if refresh_interval is None else refresh_interval,
                       float)
        n = np.asarray(self.num_iterations if num_iterations is None else num_iterations, float)
        lb, lk = np.log(b / self.samples_per_step), np.log(k / self.refresh_interval)
        ln = np.log(n / self.num_iterations)
        a_exp = self.batch_exponent if batch_exponent is None else batch_exponent
        b_exp = self.refresh_exponent if refresh_exponent is None else refresh_exponent
        if a_exp is None:
            ea, sa = np.where(lb > 0, _BATCH_EXPONENT_UP, _BATCH_EXPONENT_DOWN), _EXPONENT_SIGMA
        else:
            ea, sa = np.full_like(lb, a_exp), 0.4 * _EXPONENT_SIGMA
        if b_exp is None:
            eb = np.where(lk > 0, _REFRESH_EXPONENT_UP, _REFRESH_EXPONENT_DOWN)
            sb = _EXPONENT_SIGMA
        else:
            eb, sb = np.full_like(lk, b_exp), 0.4 * _EXPONENT_SIGMA
        log_rate = math.log(self.rate) + ea * lb + eb * lk + _REUSE_EXPONENT * ln
        sigma = np.sqrt(self.log_sigma**2 + (sa * lb) ** 2 + (sb * lk) ** 2
                        + (_EXPONENT_SIGMA * ln) ** 2)
        return np.exp(log_rate), sigma

    @classmethod
    def from_scan(
        cls,
        learning_rates: Any,
        unstable: Any,
        *,
        stiffness: float,
        momentum: float = 0.0,
        samples_per_step: float,
        refresh_interval: float = 1.0,
        num_iterations: int = 1,
        horizon_steps: int,
        optimizer: Literal["sgd", "adamw"],
    ) -> EdgeEstimate:
        """Edge from a learning-rate scan (several seeds per rate allowed).

        A rate counts as unstable when at least half of its runs were; ``high`` is the first such
        rate, ``low`` the rate below it, and the point estimate their geometric mean, all in
        units ``x = eta K / (1 - mu)`` (``mu = 0`` for AdamW).

        Args:
            learning_rates: Learning rate of each run, shape ``(n,)``.
            unstable: Whether each run was labelled unstable, shape ``(n,)``.
            stiffness: K of the model that will use the edge.
            momentum: Heavy-ball mu of the scan.
            samples_per_step, refresh_interval, num_iterations, horizon_steps, optimizer:
                The scan's conditions (see the class attributes).

        Raises:
            ValueError: The scan has no unstable rate, or its lowest rate is already unstable.

        Example:
            >>> edge = EdgeEstimate.from_scan([0.01, 0.014, 0.02, 0.02, 0.03],
            ...                               [False, False, True, False, True], stiffness=1.0,
            ...                               samples_per_step=128, horizon_steps=150,
            ...                               optimizer="sgd")
            >>> edge.low, edge.high, round(edge.rate, 4)
            (0.014, 0.02, 0.0167)
        """
        lr = np.asarray(learning_rates, float)
        bad = np.asarray(unstable, bool)
        if lr.ndim != 1 or lr.shape != bad.shape or lr.size < 2:
            raise ValueError("`learning_rates` and `unstable` must be 1-D of one length >= 2, "
                             f"got shapes {lr.shape} and {bad.shape}.")
        k = check_interval("stiffness", stiffness, low=0.0, low_closed=False)
        mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
        rates = np.unique(lr)
        frac = np.array([bad[lr == r].mean() for r in rates])
        if not (frac >= 0.5).any():
            raise ValueError("`unstable` must mark at least one rate unstable, got none. Extend "
                             f"the scan above {rates[-1]:g}.")
        first = int(np.argmax(frac >= 0.5))
        if first == 0:
            raise ValueError(f"`learning_rates` must start below the edge, got the lowest rate "
                             f"{rates[0]:g} already unstable. Extend the scan downward.")
        scale = k / (1.0 - mu)
        low, high = rates[first - 1] * scale, rates[first] * scale
        return cls(rate=math.sqrt(low * high), low=low, high=high,
                   samples_per_step=samples_per_step, refresh_interval=refresh_interval,
                   num_iterations=num_iterations, horizon_steps=horizon_steps,
                   optimizer=optimizer, n_runs=int(lr.size))

    @classmethod
    def combine(cls, edges: Any) -> EdgeEstimate:
        """Measure the transfer exponents from edges scanned at several conditions.

        ``log x* = c + a log B + b log K_ref`` is fitted by least squares; an exponent is only
        measured when its condition varies. The returned edge is the one with the most runs (the
        first on ties) with the measured exponents attached.

        Args:
            edges: Two or more `EdgeEstimate` of the same optimizer and num_iterations.

        Returns:
            The base edge with ``batch_exponent`` / ``refresh_exponent`` set where measured.

        Raises:
            ValueError: Fewer than two edges, mixed optimizers or reuse, or too few distinct
                conditions for the exponents that vary.

        Example:
            >>> e1 = EdgeEstimate(rate=0.02, low=0.018, high=0.022, samples_per_step=64,
            ...                   horizon_steps=150, optimizer="sgd")
            >>> e2 = dataclasses.replace(e1, rate=0.04, low=0.036, high=0.044,
            ...                          samples_per_step=256)
            >>> EdgeEstimate.combine([e1, e2]).batch_exponent
            0.5
        """
        edges = list(edges)
        if len(edges) < 2 or not all(isinstance(e, EdgeEstimate) for e in edges):
            raise ValueError(f"`edges` must be at least two EdgeEstimate, got {edges!r}.")
        for name in ("optimizer", "num_iterations"):
            values = {getattr(e, name) for e in edges}
            if len(values) > 1:
                raise ValueError(f"`edges` must share one {name}, got {sorted(values)!r}. "
                                 "Combine scans of one optimizer and batch reuse at a time.")
        y = np.log([e.rate for e in edges])
        cols = {"batch_exponent": np.log([e.samples_per_step for e in edges]),
                "refresh_exponent": np.log([e.refresh_interval for e in edges])}
        varying = [k for k, v in cols.items() if np.ptp(v) > 1e-12]
        design = np.column_stack([np.ones(len(edges))] + [cols[k] for k in varying])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError(
                f"`edges` must vary one condition at a time or give {design.shape[1]} independent "
                f"points, got {len(edges)} edges varying {varying}. Add a scan that changes only "
                "samples_per_step or only refresh_interval."
            )
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        base = max(edges, key=lambda e: e.n_runs)
        fitted = {k: round(float(c), 12) for k, c in zip(varying, coef[1:], strict=True)}
        return dataclasses.replace(base, **fitted)


# ------------------------------------------------------------------------------------------
# verdicts and the model
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    """The stability call for one configuration.

    Attributes:
        stable: Predicted stable (``margin > 0``).
        margin: ``log(max_learning_rate / learning_rate)``; > 0 predicted stable.
        probability: Probability of being stable, ``Phi(m_t / s_t) * Phi(m_c / s_c)`` over the
            theory (t) and calibration (c) layers, lognormal on each edge.
        layer: The layer whose bound is tighter: ``"theory"`` or ``"calibration"``.
        max_learning_rate: The tighter of the two layers' largest stable learning rate.
        regime: Predicted regime of the mean reward at this learning rate (linear theory).
        damping_ratio: zeta of the dominant mode (>= 1 overdamped; ``inf`` first order).
        time_constant: e-folding time of the dominant mode, in optimizer steps.
        reason: One sentence naming the deciding bound and its conditions.

    Example:
        >>> v = Verdict(stable=True, margin=0.5, probability=0.9, layer="theory",
        ...             max_learning_rate=0.1, regime=Regime.MONOTONE, damping_ratio=2.0,
        ...             time_constant=40.0, reason="exact linear test")
        >>> v.to_dict()["regime"]
        'monotone'
    """

    stable: bool
    margin: float
    probability: float
    layer: Literal["theory", "calibration"]
    max_learning_rate: float
    regime: Regime
    damping_ratio: float
    time_constant: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the regime as its string value)."""
        out = dataclasses.asdict(self)
        out["regime"] = self.regime.value
        return out


@dataclasses.dataclass(frozen=True)
class _StiffnessSummary:
    """The four numbers the model reads from a StiffnessEstimate (used by ``from_dict``)."""

    stiffness: float
    stiffness_current: float | None
    stiffness_sampler: float | None
    std_error: float | None


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class StabilityModel:
    """Predict the largest stable learning rate of GRPO, and the regime below it.

    Two layers, and the verdict takes the tighter:

    * **theory**: the exact discrete linear test with the measured split (K_c, K_o) plus the
      on-policy bound ``eta K < 2(1 + mu)``; in the regime where it is known to over-predict
      (importance-ratio or logprob surrogate, piecewise refresh, K_ref > 1) the bandit
      ``problem`` is simulated when given (every mu), else the bound is divided by ``safety``
      at mu >= 0.5; a known bandit with more than 2 arms is always simulated (multi-mode);
    * **calibration**: a measured `EdgeEstimate` moved to the requested batch, refresh interval,
      reuse and heavy-ball momentum by its transfer law (absent without ``edge``).

    For real LMs the calibration layer decides (the measured edge is 10-50x below the theory
    bound, real-trl-findings.md section 4). On 2-arm bandits the linear test alone is within 5%
    outside the nonlinear regime (``benchmarks/prediction_accuracy.py``).

    Args:
        estimate: A `advisor.stiffness.StiffnessEstimate` (read: ``stiffness``,
            ``stiffness_current``, ``stiffness_sampler``, ``std_error``). Without the split the
            theory assumes a pure delay (K_c = 0) and warns.
        edge: Measured edge for the calibration layer, in units of this estimate's K.
        problem: The `advisor.bandit.BanditProblem` behind the estimate, if any: enables the
            simulated nonlinear check and fixes the surrogate (otherwise GRPO's ratio).
        nonlinear_check: Apply the nonlinear check (simulation or safety factor).
        batch_exponent: Overrides the edge's batch exponent ``a``.
        refresh_exponent: Overrides the edge's refresh exponent ``b``.
        safety: Divisor of the linear bound in the nonlinear regime without a problem (>= 1;
            2.5 covers the measured 1.4-2.4x over-prediction, bandit-findings.md section 9).
        optimizer: ``"sgd"`` or ``"adamw"``, the optimizer K was measured with (default: the
            estimate's or edge's ``optimizer`` attribute, else ``"sgd"``). K for AdamW is per
            unit lr with no ``1 - mu`` factor.
        simulation_steps: Steps of each simulated run in the nonlinear check.
        horizon_steps: Training length; if given, an oscillating mode that would not settle
            within it counts as unstable (`settling_radius`). None: asymptotic stability.
        defaults: Fixed knob values used by `assess` when a key is absent (GRPOConfig names).
        num_processes: Data-parallel processes, for the completions per step.

    Example:
        >>> from types import SimpleNamespace
        >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
        ...                       stiffness_sampler=-0.75, std_error=0.01)
        >>> model = StabilityModel(est)
        >>> round(float(model.max_learning_rate(momentum=0.8, refresh_interval=3,
        ...                                     refresh_scheme="sliding", method="exact")), 3)
        0.588
    """

    def __init__(
        self,
        estimate: Any,
        *,
        edge: EdgeEstimate | None = None,
        problem: Any = None,
        nonlinear_check: bool = True,
        batch_exponent: float | None = None,
        refresh_exponent: float | None = None,
        safety: float = 2.5,
        optimizer: Literal["sgd", "adamw"] | None = None,
        simulation_steps: int = 4000,
        horizon_steps: int | None = None,
        defaults: Mapping[str, Any] | None = None,
        num_processes: int = 1,
    ) -> None:
        k = _optional_float(getattr(estimate, "stiffness", None))
        if k is None or k <= 0.0:
            raise ValueError(
                f"`estimate.stiffness` must be a finite number > 0, got "
                f"{getattr(estimate, 'stiffness', None)!r}. A non-positive stiffness means the "
                "pilot did not relax to a plateau: rerun it longer or at a smaller learning rate."
            )
        kc = _optional_float(getattr(estimate, "stiffness_current", None))
        ko = _optional_float(getattr(estimate, "stiffness_sampler", None))
        if kc is None and ko is not None:
            kc = k - ko
        if kc is None:
            warnings.warn("The estimate has no current/sampler split of K; the theory layer "
                          "assumes a pure delay (K_c = 0), which can be 2-3x off for piecewise "
                          "refresh. Add a frozen-sampler pilot to measure K_c.",
                          AdvisorWarning, stacklevel=2)
        se = _optional_float(getattr(estimate, "std_error", None))
        if se is not None and se < 0:
            raise ValueError(f"`estimate.std_error` must be >= 0, got {se!r}.")
        if edge is not None and not isinstance(edge, EdgeEstimate):
            raise TypeError(f"`edge` must be an EdgeEstimate or None, got {type(edge).__name__}.")
        self.estimate = estimate
        self.edge = edge
        self.problem = problem
        self._k, self._rc, self._se = k, (0.0 if kc is None else kc / k), (se or 0.0)
        self._split_measured = kc is not None
        self._nonlinear = bool(nonlinear_check)
        for name, value in (("batch_exponent", batch_exponent),
                            ("refresh_exponent", refresh_exponent)):
            if value is not None:
                check_interval(name, value, low=-2.0, high=2.0)
        self._batch_exponent, self._refresh_exponent = batch_exponent, refresh_exponent
        self._safety = check_interval("safety", safety, low=1.0)
        self._sim_steps = check_int("simulation_steps", simulation_steps, low=100)
        self._horizon = None if horizon_steps is None else check_int(
            "horizon_steps", horizon_steps, low=1)
        self._defaults = dict(defaults) if defaults is not None else None
        self._num_processes = check_int("num_processes", num_processes, low=1)
        found = optimizer or getattr(estimate, "optimizer", None) or (
            edge.optimizer if edge is not None else None) or "sgd"
        self.optimizer = check_options("optimizer", "adamw" if found == "adam" else found,
                                       ("sgd", "adamw"))
        if edge is not None and edge.optimizer != self.optimizer:
            raise ValueError(f"`edge.optimizer` must match the model's optimizer "
                             f"{self.optimizer!r}, got {edge.optimizer!r}. Build one model per "
                             "optimizer: K and the edge do not transfer between optimizers.")
        self.surrogate = str(getattr(problem, "surrogate", "ratio"))
        self._sim_cache: dict[tuple[float, int, str], float] = {}

    @property
    def stiffness(self) -> float:
        """K, the measured stiffness (per unit lr, heavy-ball units)."""
        return self._k

    @property
    def current_fraction(self) -> float:
        """K_c / K (0 when the split was not measured: pure delay)."""
        return self._rc

    # -- theory layer ------------------------------------------------------------------------
    def _linear_rate(self, mu: FloatArray, lag: Any, scheme: str, exact: bool) -> FloatArray:
        """Exact linear a* / K on distinct (mu, lag) pairs, or a table interpolated in mu."""
        lag_vals, lag_inv = _factorize(np.asarray(lag))
        if exact or mu.size <= 4096 or scheme == "sliding":
            mu_vals, mu_inv = np.unique(mu, return_inverse=True)
            a = critical_rate(mu_vals[:, None], lag_vals[None, :].astype(np.int64),
                              current_fraction=self._rc, refresh_scheme=scheme,
                              horizon_steps=self._horizon)
            return np.asarray(a[mu_inv.ravel(), lag_inv] / self._k)
        # Table over u = -log(1 - mu) per distinct K_ref: log a* is smooth in u away from
        # parametric resonances (median interpolation error 2e-5, max 2%: tests bound it).
        u_max = -math.log1p(-float(mu.max())) + 1e-9
        u = np.linspace(0.0, u_max, 129)
        table = np.log(critical_rate(-np.expm1(-u)[:, None], lag_vals[None, :].astype(np.int64),
                                     current_fraction=self._rc, refresh_scheme=scheme,
                                     horizon_steps=self._horizon))
        out = np.empty(mu.size)
        uq = -np.log1p(-mu)
        for j in range(lag_vals.size):
            rows = lag_inv == j
            out[rows] = np.interp(uq[rows], u, table[:, j])
        return np.exp(out) / self._k

    def _in_nonlinear_regime(self, mu: FloatArray, lag: Any, scheme: str) -> Any:
        """Where the linear test over-predicts: ratio/logprob surrogate, piecewise, K_ref > 1.

        Over-prediction is 1.4-2.4x at mu >= 0.5 (false-safe 18-34%) and a few percent at
        mu = 0 (false-safe 3%), bandit-findings.md section 5. A known bandit is simulated at every
        mu; without it the safety factor is applied at mu >= 0.5 only.
        """
        if not self._nonlinear or scheme != "piecewise" or self.optimizer != "sgd":
            return np.zeros(mu.shape, bool)
        if self.surrogate not in ("ratio", "logprob"):
            return np.zeros(mu.shape, bool)
        low = 0.0 if self.problem is not None else 0.5
        return (mu >= low) & (np.asarray(lag) > 1)

    @property
    def _multi_mode(self) -> bool:
        """A known bandit with more than 2 arms: K is a set of modes; the scalar test is rough.

        The pilot's tail measures the slowest excited mode while the stiffest mode sets the edge,
        and K_c, K_o of different modes do not share eigenvectors (bandit-findings.md 3, 10).
        """
        return self._nonlinear and self.problem is not None and self.problem.n_arms > 2

    def _simulated_rate(self, mu: FloatArray, lag: Any, scheme: str, eta_lin: FloatArray,
                        wide: bool) -> FloatArray:
        """First divergent lr of the simulated bandit (scan at 20 per decade + 8 bisections).

        ``wide=False`` scans [eta_lin/16, eta_lin] (the linear bound is an upper bound there);
        ``wide=True`` scans the whole range where a run can settle, [30(1-mu)/(K N), 8(1+mu)/K].
        """
        from advisor.bandit import simulate

        keys = [(round(float(m), 12), int(g), scheme, wide)
                for m, g in zip(mu, lag, strict=True)]
        todo = sorted({k for k in keys if k not in self._sim_cache})
        if todo:
            m = np.array([k[0] for k in todo])
            g = np.array([k[1] for k in todo])
            first_eta = dict(zip(keys, eta_lin, strict=True))
            hi = np.array([first_eta[k] for k in todo])
            lo = hi / 16.0
            if wide:
                lo = 30.0 * (1.0 - m) / (self._k * self._sim_steps)
                hi = np.maximum(8.0 * (1.0 + m) / self._k, 2.0 * lo)
            # 20 points per decade: the ratio surrogate has stable islands above its edge
            n = max(2, math.ceil(20 * float(np.log10(hi / lo).max())) + 1)
            grid = np.exp(np.log(lo)[:, None] + np.linspace(0, 1, n) * np.log(hi / lo)[:, None])

            def diverged(eta: FloatArray, mom: FloatArray, ref: Any) -> Any:
                out = np.empty(eta.size, bool)
                for i in range(0, eta.size, 2048):  # bounded memory per call
                    sl = slice(i, i + 2048)
                    run = simulate(self.problem, learning_rate=eta[sl], momentum=mom[sl],
                                   refresh_interval=ref[sl], refresh_scheme=scheme,
                                   n_steps=self._sim_steps)
                    out[sl] = [r is Regime.DIVERGENT for r in run.regimes()]
                return out

            bad = diverged(grid.ravel(), np.repeat(m, n), np.repeat(g, n)).reshape(grid.shape)
            first = np.where(bad.any(1), bad.argmax(1), n)
            result = np.where(first == n, hi, grid[:, 0])
            rows = np.flatnonzero((first > 0) & (first < n))
            if rows.size:
                a, b = grid[rows, first[rows] - 1], grid[rows, first[rows]]
                for _ in range(8):
                    mid = np.sqrt(a * b)
                    d = diverged(mid, m[rows], g[rows])
                    a, b = np.where(d, a, mid), np.where(d, mid, b)
                result[rows] = np.sqrt(a * b)
            self._sim_cache.update({k: float(r) for k, r in zip(todo, result, strict=True)})
        return np.array([self._sim_cache[k] for k in keys])

    def _theory(self, mu: FloatArray, lag: Any, scheme: str, exact: bool,
                linear_only: bool = False
                ) -> tuple[FloatArray, FloatArray, str, npt.NDArray[np.bool_]]:
        """Theory bound, its log-sigma, a note, and where a check (not the linear test) set it."""
        eta = self._linear_rate(mu, lag, scheme, exact)
        sigma = np.full(mu.shape, math.hypot(self._se / self._k, _THEORY_SIGMA))
        flag = self._in_nonlinear_regime(mu, lag, scheme)
        if self._multi_mode:
            flag = np.ones(mu.shape, bool)
        note = "exact linear test"
        if linear_only or not flag.any():
            return eta, sigma, note, np.zeros(mu.shape, bool)
        few = self.problem is not None and (exact or len(np.unique(
            np.column_stack([mu[flag], lag[flag]]), axis=0)) <= 256)
        if few:
            sim = self._simulated_rate(mu[flag], lag[flag], scheme, eta[flag], self._multi_mode)
            eta[flag] = sim if self._multi_mode else np.minimum(eta[flag], sim)
            what = "multi-mode problem" if self._multi_mode else "nonlinear regime"
            return eta, sigma, f"exact linear test + simulated bandit ({what})", flag
        if self.problem is not None:
            warnings.warn("Too many distinct (momentum, refresh) pairs to simulate the bandit; "
                          f"the nonlinear check falls back to the safety factor {self._safety:g}"
                          " (multi-mode problems: the linear test alone).",
                          AdvisorWarning, stacklevel=3)
            flag = flag & (mu >= 0.5) & (np.asarray(lag) > 1) & (scheme == "piecewise")
        eta[flag] /= self._safety
        sigma[flag] = np.hypot(sigma[flag], _SAFETY_SIGMA)
        note = f"exact linear test / safety {self._safety:g} (nonlinear regime)"
        return eta, sigma, note, flag

    # -- calibration layer -------------------------------------------------------------------
    def _calibrated(self, mu: FloatArray, lag: Any, samples: Any, n_it: Any
                    ) -> tuple[FloatArray, FloatArray]:
        if self.edge is None:
            return np.full(mu.shape, np.inf), np.ones(mu.shape)
        fresh = np.maximum(np.asarray(lag, float) / np.asarray(n_it, float), 1.0)
        x, sigma = self.edge.predict(
            samples_per_step=samples, refresh_interval=fresh, num_iterations=n_it,
            batch_exponent=self._batch_exponent, refresh_exponent=self._refresh_exponent)
        return np.broadcast_to(x * (1.0 - mu) / self._k, mu.shape).copy(), np.broadcast_to(
            sigma, mu.shape).copy()

    # -- public API --------------------------------------------------------------------------
    def _check_optimizer(self, optimizer: str | None) -> None:
        opt = "adamw" if optimizer == "adam" else (optimizer or self.optimizer)
        check_options("optimizer", opt, ("sgd", "adamw"))
        if opt != self.optimizer:
            raise ValueError(f"`optimizer` must be {self.optimizer!r} (the optimizer K was "
                             f"measured with), got {optimizer!r}. Build one StabilityModel per "
                             "optimizer from its own pilot.")

    def _bounds(self, mu: FloatArray, lag: Any, samples: Any, n_it: Any, scheme: str,
                method: str, exact: bool) -> dict[str, Any]:
        """Per-layer bounds (arrays) for the requested method."""
        inf = np.full(mu.shape, np.inf)
        if method == "closed_form":
            eta_t = np.asarray(closed_form_rate(mu, lag), float) / self._k
            return dict(eta_t=eta_t, sig_t=np.full(mu.shape, _THEORY_SIGMA), eta_c=inf,
                        sig_c=np.ones(mu.shape), checked=np.ones(mu.shape, bool),
                        note="the paper's closed form eta K K_ref < 1-mu")
        if method == "calibrated" and self.edge is None:
            raise ValueError("`method` must not be 'calibrated' without an edge, got "
                             "'calibrated'. Pass edge=EdgeEstimate(...) from a pilot scan.")
        eta_t, sig_t, note, checked = (inf, np.ones(mu.shape), "", np.ones(mu.shape, bool)) \
            if method == "calibrated" else \
            self._theory(mu, lag, scheme, exact, linear_only=method == "exact")
        eta_c, sig_c = (inf, np.ones(mu.shape)) if method in ("theory", "exact") else \
            self._calibrated(mu, lag, samples, n_it)
        return dict(eta_t=eta_t, sig_t=sig_t, eta_c=eta_c, sig_c=sig_c, note=note,
                    checked=checked)

    def max_learning_rate(
        self,
        *,
        momentum: Any = 0.0,
        refresh_interval: Any = 1,
        refresh_scheme: Scheme = "piecewise",
        optimizer: Literal["sgd", "adamw"] | None = None,
        samples_per_step: Any = None,
        num_iterations: Any = 1,
        method: Method = "auto",
    ) -> FloatArray:
        """Largest stable learning rate, vectorised over the condition arrays.

        Args:
            momentum: Heavy-ball mu in [0, 1) (must be 0 for AdamW).
            refresh_interval: K_ref >= 1 (piecewise) or sliding lag d >= 0, in optimizer steps.
            refresh_scheme: ``"piecewise"`` (TRL) or ``"sliding"`` (asynchronous lag).
            optimizer: Must equal the model's optimizer (None: the model's).
            samples_per_step: Completions per optimizer step (None: the edge's).
            num_iterations: Batch reuse (TRL ``num_iterations``), for the calibration layer.
            method: ``"auto"`` (tighter layer), ``"theory"`` (linear + nonlinear check),
                ``"exact"`` (linear test only), ``"calibrated"``, or ``"closed_form"``
                (the paper's line, for comparison only).

        Returns:
            Array broadcast over the inputs (0-d for scalars).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=0.0,
            ...                       stiffness_sampler=0.5, std_error=0.0)
            >>> round(float(StabilityModel(est).max_learning_rate(refresh_interval=8)), 4)
            0.5
        """
        check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
        check_options("method", method, ("auto", "theory", "exact", "closed_form", "calibrated"))
        self._check_optimizer(optimizer)
        mu, lag, samples, n_it = np.broadcast_arrays(
            np.asarray(momentum, float), np.asarray(refresh_interval, float),
            np.asarray(np.nan if samples_per_step is None else samples_per_step, float),
            np.asarray(num_iterations, float))
        shape = mu.shape
        mu, lag, samples, n_it = (np.ascontiguousarray(v).ravel()
                                  for v in (mu, lag, samples, n_it))
        _check_conditions(mu, lag, refresh_scheme, self.optimizer)
        samples = None if samples_per_step is None else samples
        lag_int = _integer_lag(lag)
        b = self._bounds(mu, lag_int, samples, n_it, refresh_scheme, method, exact=True)
        return np.minimum(b["eta_t"], b["eta_c"]).reshape(shape)

    def is_stable(
        self,
        learning_rate: Any,
        *,
        momentum: Any = 0.0,
        refresh_interval: Any = 1,
        refresh_scheme: Scheme = "piecewise",
        optimizer: Literal["sgd", "adamw"] | None = None,
        samples_per_step: Any = None,
        num_iterations: Any = 1,
        method: Method = "auto",
    ) -> npt.NDArray[np.bool_]:
        """Set-valued stability test at given learning rates (vectorised).

        Unlike ``learning_rate < max_learning_rate(...)`` this evaluates the exact linear test
        at each learning rate, so stable islands above the first edge (parametric resonance of
        lagged heavy ball) count as stable. Where a check sets the theory bound (simulation,
        safety factor) and for the calibration layer the bound is a threshold. `assess` stays
        conservative and calls islands unstable: they are fragile.

        Args:
            learning_rate: eta > 0, broadcast with the conditions.
            momentum, refresh_interval, refresh_scheme, optimizer, samples_per_step,
                num_iterations, method: As in `max_learning_rate`.

        Returns:
            Boolean array of the broadcast shape.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=0.0,
            ...                       stiffness_sampler=0.5, std_error=0.0)
            >>> StabilityModel(est).is_stable([0.9, 1.1], refresh_interval=4).tolist()
            [True, False]
        """
        check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
        check_options("method", method, ("auto", "theory", "exact", "closed_form", "calibrated"))
        self._check_optimizer(optimizer)
        lr, mu, lag, samples, n_it = np.broadcast_arrays(
            np.asarray(learning_rate, float), np.asarray(momentum, float),
            np.asarray(refresh_interval, float),
            np.asarray(np.nan if samples_per_step is None else samples_per_step, float),
            np.asarray(num_iterations, float))
        shape = lr.shape
        lr, mu, lag, samples, n_it = (np.ascontiguousarray(v).ravel()
                                      for v in (lr, mu, lag, samples, n_it))
        if not np.all(np.isfinite(lr) & (lr > 0)):
            raise ValueError(f"`learning_rate` must be finite and > 0, got {learning_rate!r}.")
        _check_conditions(mu, lag, refresh_scheme, self.optimizer)
        lag_int = _integer_lag(lag)
        b = self._bounds(mu, lag_int, None if samples_per_step is None else samples,
                         n_it, refresh_scheme, method, exact=True)
        rho_max = 1.0 if self._horizon is None else settling_radius(self._horizon)
        linear = _is_stable(lr * self._k, mu, self._rc, lag_int, refresh_scheme, rho_max)
        theory = np.where(b["checked"], lr < b["eta_t"], linear)
        return np.asarray(theory & (lr < b["eta_c"])).reshape(shape)

    def _evaluate(self, lr: FloatArray, mu: FloatArray, lag: Any, samples: Any, n_it: Any,
                  exact: bool) -> dict[str, Any]:
        b = self._bounds(mu, lag, samples, n_it, "piecewise", "auto", exact)
        eta_max = np.minimum(b["eta_t"], b["eta_c"])
        with np.errstate(divide="ignore"):
            m_t, m_c = np.log(b["eta_t"] / lr), np.log(b["eta_c"] / lr)
        prob = ndtr(m_t / b["sig_t"]) * np.where(np.isfinite(m_c), ndtr(m_c / b["sig_c"]), 1.0)
        layer = np.array(["theory", "calibration"])[(b["eta_c"] < b["eta_t"]).view(np.int8)]
        return dict(stable=eta_max > lr, margin=np.log(eta_max / lr), probability=prob,
                    max_learning_rate=eta_max, layer=layer, note=b["note"], eta_t=b["eta_t"],
                    eta_c=b["eta_c"])

    def _details(self, lr: FloatArray, mu: FloatArray, lag: Any, stable: Any
                 ) -> tuple[npt.NDArray[np.object_], FloatArray, FloatArray]:
        z1, z2 = _multiplier_pair(lr * self._k, mu, self._rc, lag, "piecewise")
        zeta, tau = _damping_and_time(z1, z2)
        return _regime_of(zeta, stable), zeta, tau

    def assess(self, params: Mapping[str, Any]) -> Verdict:
        """Stability verdict for one configuration given by GRPOConfig-named knobs.

        Args:
            params: ``learning_rate``, ``momentum`` (heavy ball) or ``optim``/``adam_beta1``,
                ``steps_per_generation``, ``num_iterations``, ``gradient_accumulation_steps``,
                ``num_generations``, ``per_device_train_batch_size`` (absent keys: the model's
                ``defaults``, then TRL's).

        Returns:
            The `Verdict` (TRL refreshes piecewise).

        Raises:
            ValueError: Knobs that TRL would reject, or an optimizer other than the model's.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
            ...                       stiffness_sampler=-0.75, std_error=0.02)
            >>> v = StabilityModel(est).assess({"learning_rate": 0.5, "momentum": 0.0})
            >>> v.stable, v.layer, v.regime.value
            (True, 'theory', 'monotone')
        """
        from advisor.knobs import knobs_from_params

        knobs = knobs_from_params(params, defaults=self._defaults,
                                  num_processes=self._num_processes)
        self._check_optimizer(knobs.optimizer)
        lr, mu = np.array([knobs.learning_rate]), np.array([knobs.heavy_ball_momentum])
        lag = _integer_lag(np.array([knobs.refresh_interval]))
        samples = np.array([float(knobs.completions_per_step)])
        n_it = np.array([float(knobs.num_iterations)])
        ev = self._evaluate(lr, mu, lag, samples, n_it, exact=True)
        regime, zeta, tau = self._details(lr, mu, lag, ev["stable"])
        layer = str(ev["layer"][0])
        if layer == "calibration":
            edge = self.edge
            assert edge is not None
            reason = (f"measured edge x*={edge.rate:.3g} at B={edge.samples_per_step:g}, "
                      f"K_ref={edge.refresh_interval:g}, {edge.horizon_steps} steps, moved to "
                      f"B={samples[0]:g}, K_ref={lag[0]}, num_iterations={int(n_it[0])}")
        else:
            reason = f"{ev['note']} (K={self._k:.3g}, K_c/K={self._rc:.3g}, K_ref={lag[0]})"
        return Verdict(
            stable=bool(ev["stable"][0]), margin=float(ev["margin"][0]),
            probability=float(ev["probability"][0]), layer=layer,  # type: ignore[arg-type]
            max_learning_rate=float(ev["max_learning_rate"][0]), regime=regime[0],
            damping_ratio=float(zeta[0]), time_constant=float(tau[0]), reason=reason)

    def assess_many(self, params: Mapping[str, Any], *, details: bool = False
                    ) -> dict[str, Any]:
        """Vectorised `assess` over arrays of knobs (10^6 configs in about a second).

        Discrete knobs are resolved once per distinct combination by `advisor.knobs`; the
        theory bound is exact on up to 2048 distinct (momentum, K_ref) pairs and interpolated in
        momentum from an exact table beyond that.

        Args:
            params: Knob name -> array (or scalar), broadcast to one length. ``momentum`` may be
                NaN where a configuration has no heavy-ball momentum (e.g. AdamW rows).
            details: Also return ``regime``, ``damping_ratio`` and ``time_constant`` (exact
                Floquet multipliers, about 1 s per 10^6 configs).

        Returns:
            Dict of arrays: ``stable``, ``margin``, ``probability``, ``max_learning_rate``,
            ``layer`` (and the details).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
            ...                       stiffness_sampler=-0.75, std_error=0.02)
            >>> out = StabilityModel(est).assess_many(
            ...     {"learning_rate": [0.5, 5.0], "momentum": 0.0})
            >>> out["stable"].tolist()
            [True, False]
        """
        lr, mu, lag, samples, n_it = self._parse_many(params)
        ev = self._evaluate(lr, mu, lag, samples, n_it, exact=False)
        out = {k: ev[k] for k in ("stable", "margin", "probability", "max_learning_rate",
                                  "layer")}
        if details:
            out["regime"], out["damping_ratio"], out["time_constant"] = self._details(
                lr, mu, lag, ev["stable"])
        return out

    def _parse_many(self, params: Mapping[str, Any]) -> tuple[FloatArray, ...]:
        """Arrays (lr, mu, K_ref, completions per step, num_iterations) from knob arrays."""
        from advisor.knobs import knobs_from_params

        if "learning_rate" not in params:
            raise ValueError("`params` must contain 'learning_rate', got keys "
                             f"{sorted(params)!r}.")
        cols = {k: np.asarray(v) for k, v in params.items()}
        n = int(np.prod(np.broadcast_shapes(*(c.shape for c in cols.values())) or (1,)))
        cols = {k: np.broadcast_to(c, (n,)) if c.ndim <= 1 else c for k, c in cols.items()}
        if any(c.ndim != 1 for c in cols.values()):
            raise ValueError("`params` values must be scalars or 1-D arrays of one length.")
        lr = np.asarray(cols.pop("learning_rate"), float)
        bad = ~(np.isfinite(lr) & (lr > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"`learning_rate` must be finite and > 0, got {float(lr[i])!r} at "
                             f"index {i}.")
        mom = cols.pop("momentum", None)
        mom = None if mom is None else np.asarray(mom, float)
        key = np.zeros(n, np.int64)
        extra = [] if mom is None else [np.isfinite(mom)]
        for c in [*cols.values(), *extra]:
            _, code = _factorize(c)
            key = key * (int(code.max()) + 1) + code
        keys, inverse = _factorize(key)
        first = np.empty(keys.size, np.int64)
        first[inverse[::-1]] = np.arange(n)[::-1]  # one representative row per group
        group = np.empty((len(first), 4))
        for g, i in enumerate(first):
            rep: dict[str, Any] = {k: c[i].item() if hasattr(c[i], "item") else c[i]
                                   for k, c in cols.items()}
            rep["learning_rate"] = 1.0
            if mom is not None and np.isfinite(mom[i]):
                rep["momentum"] = 0.0
            kn = knobs_from_params(rep, defaults=self._defaults,
                                   num_processes=self._num_processes)
            self._check_optimizer(kn.optimizer)
            group[g] = (kn.heavy_ball_momentum, kn.refresh_interval, kn.completions_per_step,
                        kn.num_iterations)
        per_row = group[inverse]
        mu = per_row[:, 0]
        if mom is not None:
            mu = np.where(np.isfinite(mom), mom, mu)
        _check_conditions(mu, per_row[:, 1], "piecewise", self.optimizer)
        return lr, mu, _integer_lag(per_row[:, 1]), per_row[:, 2], per_row[:, 3]

    def margin(self, params: Mapping[str, Any]) -> float:
        """``log(max_learning_rate / learning_rate)`` of `assess`; > 0 predicted stable.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> round(StabilityModel(est).margin({"learning_rate": 1.0, "momentum": 0.0}), 3)
            0.693
        """
        return self.assess(params).margin

    def probability_stable(self, params: Mapping[str, Any]) -> float:
        """Probability of being stable (`Verdict.probability`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.1)
            >>> StabilityModel(est).probability_stable({"learning_rate": 0.1, "momentum": 0.0})
            1.0
        """
        return self.assess(params).probability

    def regime(self, params: Mapping[str, Any]) -> Regime:
        """Predicted regime of the mean reward (`Verdict.regime`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> StabilityModel(est).regime({"learning_rate": 0.05, "momentum": 0.9}).value
            'oscillatory'
        """
        return self.assess(params).regime

    def damping_ratio(self, params: Mapping[str, Any]) -> float:
        """Damping ratio zeta of the dominant mode (`Verdict.damping_ratio`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> StabilityModel(est).damping_ratio({"learning_rate": 0.5, "momentum": 0.0})
            inf
        """
        return self.assess(params).damping_ratio

    def time_constant(self, params: Mapping[str, Any]) -> float:
        """e-folding time of the dominant mode in optimizer steps (`Verdict.time_constant`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> round(StabilityModel(est).time_constant({"learning_rate": 0.01,
            ...                                          "momentum": 0.0}), 2)  # -1/ln(0.99)
            99.5
        """
        return self.assess(params).time_constant

    def max_refresh_interval(self, params: Mapping[str, Any], *, limit: int = 64) -> float:
        """Largest K_ref such that the configuration is stable at every K_ref up to it.

        The refresh interval in ``params`` is ignored; K_ref = 1 ... ``limit`` are tried at the
        configuration's learning rate, momentum, batch and reuse.

        Returns:
            The K_ref (0 if unstable even on-policy; ``inf`` if stable up to ``limit``).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=0.0,
            ...                       stiffness_sampler=1.0, std_error=0.0)
            >>> StabilityModel(est).max_refresh_interval({"learning_rate": 0.3, "momentum": 0.0})
            6.0
        """
        from advisor.knobs import knobs_from_params

        limit = check_int("limit", limit, low=1)
        kn = knobs_from_params(params, defaults=self._defaults, num_processes=self._num_processes)
        self._check_optimizer(kn.optimizer)
        lag = np.arange(1, limit + 1)
        mu = np.full(limit, kn.heavy_ball_momentum)
        ev = self._evaluate(np.full(limit, kn.learning_rate), mu, lag,
                            np.full(limit, float(kn.completions_per_step)),
                            np.full(limit, float(kn.num_iterations)), exact=True)
        unstable = np.flatnonzero(~ev["stable"])
        return float(unstable[0]) if unstable.size else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stiffness summary, edge, settings; the problem if any).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
            ...                       stiffness_sampler=-0.75, std_error=0.01)
            >>> d = StabilityModel(est).to_dict()
            >>> StabilityModel.from_dict(d).to_dict() == d
            True
        """
        problem = None
        if self.problem is not None:
            problem = {f.name: getattr(self.problem, f.name)
                       for f in dataclasses.fields(self.problem)}
            problem = {k: list(v) if isinstance(v, tuple) else v for k, v in problem.items()}
        return {
            "estimate": {"stiffness": self._k, "stiffness_current": self._rc * self._k
                         if self._split_measured else None,
                         "stiffness_sampler": (1.0 - self._rc) * self._k
                         if self._split_measured else None,
                         "std_error": self._se},
            "edge": None if self.edge is None else dataclasses.asdict(self.edge),
            "problem": problem,
            "nonlinear_check": self._nonlinear, "batch_exponent": self._batch_exponent,
            "refresh_exponent": self._refresh_exponent, "safety": self._safety,
            "optimizer": self.optimizer, "simulation_steps": self._sim_steps,
            "horizon_steps": self._horizon,
            "defaults": self._defaults, "num_processes": self._num_processes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StabilityModel:
        """Rebuild a model from `to_dict` output (the estimate becomes a 4-number summary).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=None,
            ...                       stiffness_sampler=None, std_error=0.0)
            >>> import warnings
            >>> with warnings.catch_warnings():
            ...     warnings.simplefilter("ignore")
            ...     m = StabilityModel.from_dict(StabilityModel(est).to_dict())
            >>> m.current_fraction
            0.0
        """
        d = dict(data)
        est = _StiffnessSummary(**d.pop("estimate"))
        edge = d.pop("edge")
        problem = d.pop("problem")
        if problem is not None:
            from advisor.bandit import BanditProblem

            problem = BanditProblem(**problem)
        return cls(est, edge=None if edge is None else EdgeEstimate(**edge), problem=problem,
                   **d)


def _factorize(values: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """Distinct values and the code of each entry; O(n) for small non-negative integers."""
    v = np.asarray(values)
    if v.ndim == 1 and v.size and v.strides[0] == 0:  # a broadcast scalar
        return v[:1].copy(), np.zeros(v.size, np.int64)
    if v.dtype.kind in "iub" and v.size and v.min() >= 0 and v.max() < 2**22:
        v = v.astype(np.int64)
        present = np.zeros(int(v.max()) + 1, bool)
        present[v] = True
        lookup = np.cumsum(present) - 1
        return np.flatnonzero(present), lookup[v].astype(np.int64)
    if v.dtype.kind not in "iufb":
        v = v.astype(str)
    uniq, inv = np.unique(v, return_inverse=True)
    return uniq, inv.ravel().astype(np.int64)


def _check_conditions(mu: FloatArray, lag: FloatArray, scheme: str, optimizer: str) -> None:
    bad = ~(np.isfinite(mu) & (mu >= 0.0) & (mu < 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`momentum` must be a finite number in [0, 1), got {float(mu[i])!r} at "
                         f"index {i}.")
    if optimizer == "adamw" and (mu != 0.0).any():
        raise ValueError(f"`momentum` must be 0 for AdamW, got {float(mu[mu != 0][0])!r}. "
                         "Heavy-ball momentum is SGD's; adam_beta1 does not enter the model.")
    low = 1.0 if scheme == "piecewise" else 0.0
    bad = ~(np.isfinite(lag) & (lag >= low))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`refresh_interval` must be a finite number >= {low:g} for the "
                         f"{scheme} scheme, got {float(lag[i])!r} at index {i}.")


def _integer_lag(lag: FloatArray) -> npt.NDArray[np.int64]:
    """Round K_ref to whole optimizer steps (TRL's spg*num_iterations/GA can be fractional)."""
    rounded = np.rint(lag)
    if (np.abs(rounded - lag) > 1e-9).any():
        warnings.warn("A fractional refresh interval was rounded to whole optimizer steps "
                      f"(e.g. {lag[np.abs(rounded - lag) > 1e-9][0]:g}); the linear theory needs "
                      "an integer period.", AdvisorWarning, stacklevel=3)
    return rounded.astype(np.int64)

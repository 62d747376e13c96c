"""Closed-form trajectories of the mean reward, the regime of a step size, and reward-curve fits.

The mean reward relaxes to its plateau like a damped oscillator (theory.md section 1;
paper-math.md sections 1.3 and 2.1). Started from rest, the response is
``p(t) = p* - (p* - p0) * Phi(t)`` with ``Phi(0) = 1``.

Conventions:
    p_k      mean reward after k optimizer steps; p* the plateau; e_k = p_k - p*.
    eta, mu  learning rate and heavy-ball momentum (mu in [0, 1)); K the stiffness.
    rate     dimensionless rate x = eta*K/(1-mu): the per-step relaxation rate of the
             overdamped (single-exponential) limit, p = p* - (p* - p0) exp(-x t).
    Continuous model: x'' + gamma x' + omega0^2 x = 0 with gamma = 1 - mu, omega0^2 = eta*K,
             damping ratio zeta = gamma / (2 omega0), natural frequency omega0 (rad/step).
    Discrete heavy-ball map (exact): e_{k+1} = (1 + mu - eta K) e_k - mu e_{k-1}, e_{-1} = e_0,
             characteristic roots z^2 - (1 + mu - eta K) z + mu = 0.
    Shapes:  ``steps`` is (n,); the vectorised functions broadcast ``rate`` and ``momentum``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from enum import Enum
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import stats

from advisor._validation import as_finite_1d
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.exceptions import FitError
from advisor.exceptions import InsufficientDataError


__all__ = [
    "Regime", "TrajectoryFit", "damping_ratio", "natural_frequency", "relaxation_rate",
    "time_constant", "regime", "trajectory", "fit_trajectory",
]

FloatArray = npt.NDArray[np.float64]
ModelName = Literal["exponential", "oscillator", "two_timescale"]
MODELS: tuple[str, ...] = ("exponential", "oscillator", "two_timescale")
# free parameters per model (plateau free); the minimum length is n_params + 2 so that AICc
# (which needs n > k + 1 with k = n_params + 1 for the noise variance) is defined.
_N_PARAMS = {"exponential": 3, "oscillator": 4, "two_timescale": 5}
# 1% dead-zone visibility of a from-rest oscillator (bandit-findings.md section 5):
# second crossing visible iff exp(-2 pi zeta / sqrt(1 - zeta^2)) > 1%.
_ZETA_SECOND_CROSSING = 0.591
# candidate models whose prediction bands are pooled (AICc units above the best): a model that
# is not clearly rejected keeps its band, which guards the interval against misspecification
_BAND_AICC = 6.0


class Regime(str, Enum):
    """Qualitative regime of the mean-reward trajectory (bandit-findings.md section 5 rules).

    Example:
        >>> Regime("overshoot") is Regime.OVERSHOOT
        True
    """

    MONOTONE = "monotone"
    OVERSHOOT = "overshoot"
    OSCILLATORY = "oscillatory"
    DIVERGENT = "divergent"

    def __str__(self) -> str:
        # numpy compares object arrays via str(); the plain value keeps `arr == Regime.X` working
        return self.value


_REGIMES = np.array(list(Regime), dtype=object)


# ---------------------------------------------------------------------------------------------
# Step-size physics (vectorised)
# ---------------------------------------------------------------------------------------------
def _rate_mu(rate: Any, momentum: Any) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(rate, dtype=np.float64)
    mu = np.asarray(momentum, dtype=np.float64)
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"`rate` must be finite and >= 0, got {rate!r}.")
    if not np.all(np.isfinite(mu)) or np.any(mu < 0) or np.any(mu >= 1):
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}.")
    return np.broadcast_arrays(x, mu)  # type: ignore[return-value]


def _roots(eta_k: FloatArray, mu: FloatArray) -> tuple[npt.NDArray[np.complex128], FloatArray]:
    """Dominant root z1 (largest modulus) of z^2 - (1 + mu - eta K) z + mu and mu = z1 * z2."""
    b = 1.0 + mu - eta_k
    disc = b * b - 4.0 * mu
    disc = np.where(np.abs(disc) <= 1e-12 * (1 + b * b), 0.0, disc)  # double root (critical)
    sq = np.sqrt(np.abs(disc))
    real = np.where(b >= 0, (b + sq) / 2, (b - sq) / 2)
    z1 = np.where(disc >= 0, real + 0j, b / 2 + 1j * sq / 2)
    return z1, mu


def _scalar_or_array(x: FloatArray) -> Any:
    return float(x) if x.ndim == 0 else x


def damping_ratio(rate: Any, momentum: Any = 0.0, *, exact: bool = False) -> Any:
    """Damping ratio zeta of the reward dynamics at dimensionless rate x = eta*K/(1-mu).

    Continuous (``exact=False``, the paper's): zeta = (1 - mu) / (2 sqrt(eta K)). Exact:
    zeta of the discrete roots, z = exp(s), zeta = -Re s / |s| (1 for real positive roots).

    Args:
        rate: Dimensionless rate x >= 0 (scalar or array).
        momentum: Heavy-ball momentum mu in [0, 1) (broadcast with ``rate``).
        exact: Use the discrete heavy-ball roots instead of the continuous limit.

    Returns:
        A float for scalar input, else an array of the broadcast shape.

    Example:
        >>> round(damping_ratio(0.02, 0.9), 3)
        1.118
    """
    x, mu = _rate_mu(rate, momentum)
    eta_k = x * (1 - mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        if not exact:
            return _scalar_or_array(np.where(eta_k > 0, (1 - mu) / (2 * np.sqrt(eta_k)), np.inf))
        z1, _ = _roots(eta_k, mu)
        s = np.log(z1.astype(np.complex128))
        zeta = -s.real / np.abs(s)
        zeta = np.where((np.abs(z1.imag) == 0) & (z1.real > 0), 1.0, zeta)
    return _scalar_or_array(np.where(eta_k > 0, zeta, np.inf))


def natural_frequency(rate: Any, momentum: Any = 0.0, *, exact: bool = False) -> Any:
    """Natural frequency omega0 = sqrt(eta K) in rad/step (exact: |log z| of the dominant root).

    Example:
        >>> round(natural_frequency(0.02, 0.9), 4)
        0.0447
    """
    x, mu = _rate_mu(rate, momentum)
    eta_k = x * (1 - mu)
    if not exact:
        return _scalar_or_array(np.sqrt(eta_k))
    z1, _ = _roots(eta_k, mu)
    with np.errstate(divide="ignore"):
        return _scalar_or_array(np.abs(np.log(z1.astype(np.complex128))))


def relaxation_rate(rate: Any, momentum: Any = 0.0) -> Any:
    """Asymptotic per-step decay rate -ln|z1| of the exact discrete map (<= 0: not decaying).

    It tends to the dimensionless rate x when the damping ratio is large (the single-exponential
    limit); near critical damping the slow root is faster than x.

    Example:
        >>> round(relaxation_rate(0.001, 0.9), 5), round(relaxation_rate(0.01, 0.9), 5)
        (0.00101, 0.01119)
    """
    x, mu = _rate_mu(rate, momentum)
    z1, _ = _roots(x * (1 - mu), mu)
    with np.errstate(divide="ignore"):
        return _scalar_or_array(-np.log(np.abs(z1)))


def time_constant(rate: Any, momentum: Any = 0.0) -> Any:
    """Steps per e-fold of the slowest mode, 1 / relaxation_rate (inf when not decaying).

    Example:
        >>> round(time_constant(0.05), 2)
        19.5
    """
    lam = np.asarray(relaxation_rate(rate, momentum), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return _scalar_or_array(np.where(lam > 0, 1.0 / lam, np.inf))


def regime(rate: Any, momentum: Any = 0.0) -> Any:
    """Regime of the exact discrete heavy-ball map at dimensionless rate x = eta*K/(1-mu).

    Monotone while both roots are real and positive (overshoot onset on-policy at
    eta K = (1 - sqrt(mu))^2); divergent when |z1| >= 1 (eta K >= 2(1 + mu), or x = 0 which does
    not relax); oscillatory when a second crossing is visible beyond the 1% dead zone
    (equivalent zeta < 0.591); overshoot otherwise.

    Returns:
        A :class:`Regime` for scalar input, else an object array of them.

    Example:
        >>> regime(0.02, 0.9).value, regime(0.5, 0.9).value, regime(50.0, 0.9).value
        ('monotone', 'oscillatory', 'divergent')
    """
    x, mu = _rate_mu(rate, momentum)
    eta_k = x * (1 - mu)
    z1, _ = _roots(eta_k, mu)
    zeta = np.asarray(damping_ratio(x, mu, exact=True))
    monotone = (z1.imag == 0) & (z1.real > 0)
    code = np.where(monotone, 0, np.where(zeta < _ZETA_SECOND_CROSSING, 2, 1))
    code = np.where((np.abs(z1) >= 1.0 - 1e-12) | (eta_k <= 0), 3, code)  # |z| = 1: no decay
    return _REGIMES[int(code)] if code.ndim == 0 else _REGIMES[code]


# ---------------------------------------------------------------------------------------------
# Unit responses Phi (Phi(0) = 1, started from rest)
# ---------------------------------------------------------------------------------------------
def _phi_heavy_ball(k: FloatArray, eta_k: float, mu: float) -> FloatArray:
    """Exact discrete response: Phi_k = h_k - mu h_{k-1}, h_k = (z1^{k+1} - z2^{k+1})/(z1 - z2)."""
    z1 = complex(_roots(np.float64(eta_k), np.float64(mu))[0])

    def h(j: FloatArray) -> FloatArray:
        if z1 == 0:
            return (j == 0).astype(np.float64)
        if z1.imag != 0:  # complex pair r e^{+-i theta}: h_j = r^j sin((j+1) theta) / sin theta
            r, th = abs(z1), abs(np.angle(z1))
            return r**j * np.sin((j + 1) * th) / np.sin(th)
        z, q = z1.real, mu / z1.real**2  # q = z2 / z1 in [0, 1]
        if q == 0:
            return np.where(j >= 0, z**j, 0.0)
        u = math.log(q)
        ratio = (j + 1) if u == 0 else np.expm1((j + 1) * u) / math.expm1(u)
        return z**j * ratio

    return h(k) - mu * h(k - 1)


def _phi_oscillator(t: FloatArray, omega0: FloatArray, zeta: FloatArray) -> FloatArray:
    """Continuous response of x'' + 2 zeta omega0 x' + omega0^2 x = 0 from rest (stable forms)."""
    sig = zeta * omega0
    q = omega0**2 * (zeta**2 - 1)
    s = np.sqrt(np.abs(q))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # sig - s, written without cancellation
        slow = omega0 / (zeta + np.sqrt(np.maximum(zeta**2 - 1, 0)))
        e2 = np.exp(-2 * s * t)
        sinh_s = np.where(s > 0, -np.expm1(-2 * s * t) / (2 * s), t)
        over = np.exp(-slow * t) * ((1 + e2) / 2 + sig * sinh_s)
        under = np.exp(-sig * t) * (np.cos(s * t) + sig * t * np.sinc(s * t / np.pi))
    return np.where(q > 0, over, under)


def trajectory(
    steps: Any,
    *,
    plateau: float,
    start: float,
    rate: float,
    momentum: float = 0.0,
    model: Literal["exponential", "oscillator", "heavy_ball", "two_timescale"] = "exponential",
    rate2: float | None = None,
    weight: float | None = None,
) -> FloatArray:
    """Closed-form mean reward p(steps) started from rest at p(0) = ``start``.

    * ``"exponential"``: p* - (p* - p0) exp(-x t), the overdamped limit.
    * ``"oscillator"``: the continuous model with gamma = 1 - mu and omega0^2 = x (1 - mu):
      overdamped, critical or underdamped (paper-math.md section 2.1).
    * ``"heavy_ball"``: the exact discrete map, solved through its characteristic roots
      (``steps`` must be integers).
    * ``"two_timescale"``: p* - (p* - p0) [w exp(-x t) + (1 - w) exp(-x2 t)], ``rate2`` = x2
      and ``weight`` = w, the share of the initial gap carried by the first mode.

    Args:
        steps: Optimizer steps t >= 0, shape (n,).
        plateau: p*, the fixed point.
        start: p0, the reward at step 0.
        rate: Dimensionless rate x = eta*K/(1-mu) > 0 (per step).
        momentum: Heavy-ball mu in [0, 1) (oscillator and heavy_ball models).
        model: Which closed form.
        rate2: Second rate (two_timescale only).
        weight: Weight of the first mode (two_timescale only).

    Returns:
        The mean reward at ``steps``, shape (n,).

    Example:
        >>> p = trajectory([0, 1, 2], plateau=0.9, start=0.5, rate=0.2, momentum=0.5,
        ...                model="heavy_ball")
        >>> p.round(4).tolist()
        [0.5, 0.54, 0.596]
    """
    check_options("model", model, ("exponential", "oscillator", "heavy_ball", "two_timescale"))
    t = np.asarray(steps, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"`steps` must be finite and >= 0, got {steps!r}.")
    x = check_interval("rate", rate, low=0.0, low_closed=False)
    mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
    p_star, gap = float(plateau), float(plateau) - float(start)
    if model == "exponential":
        phi = np.exp(-x * t)
    elif model == "oscillator":
        omega0 = math.sqrt(x * (1 - mu))
        phi = _phi_oscillator(t, np.float64(omega0), np.float64((1 - mu) / (2 * omega0)))
    elif model == "heavy_ball":
        if not np.all(t == np.round(t)):
            raise ValueError("`steps` must be integers for model='heavy_ball', got non-integers.")
        phi = _phi_heavy_ball(t, x * (1 - mu), mu)
    else:
        if rate2 is None or weight is None:
            raise ValueError("`rate2` and `weight` must be given for model='two_timescale'.")
        x2 = check_interval("rate2", rate2, low=0.0, low_closed=False)
        w = check_interval("weight", weight)
        phi = w * np.exp(-x * t) + (1 - w) * np.exp(-x2 * t)
    return np.asarray(p_star - gap * phi, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Fitting: internal parameter vectors (log of positive rates, so samples stay physical)
#   exponential   [P, p0, log lam]
#   oscillator    [P, p0, log omega0, log zeta]
#   two_timescale [a, b, c, log r1, log r2]   p = a + b e^{-r1 t} + c e^{-r2 t}
# ---------------------------------------------------------------------------------------------
def _model_eval(model: str, theta: FloatArray, t: FloatArray) -> FloatArray:
    """Evaluate a model; ``theta`` is (p,) or (m, p) for m parameter samples."""
    th = np.atleast_2d(theta)
    col = [th[:, i : i + 1] for i in range(th.shape[1])]
    with np.errstate(over="ignore", invalid="ignore"):
        if model == "exponential":
            out = col[0] + (col[1] - col[0]) * np.exp(-np.exp(col[2]) * t)
        elif model == "oscillator":
            phi = _phi_oscillator(t, np.exp(col[2]), np.exp(col[3]))
            out = col[0] + (col[1] - col[0]) * phi
        else:
            out = (col[0] + col[1] * np.exp(-np.exp(col[3]) * t)
                   + col[2] * np.exp(-np.exp(col[4]) * t))
    return out[0] if np.ndim(theta) == 1 else out


def _basis(model: str, nl: FloatArray, t: FloatArray) -> FloatArray:
    """Shapes multiplying the linear parameters for nonlinear values ``nl`` (m, q): (m, n, r)."""
    if model == "exponential":
        return np.exp(-np.exp(nl[:, :1]) * t)[:, :, None]
    if model == "oscillator":
        return _phi_oscillator(t, np.exp(nl[:, :1]), np.exp(nl[:, 1:2]))[:, :, None]
    return np.stack([np.exp(-np.exp(nl[:, :1]) * t), np.exp(-np.exp(nl[:, 1:2]) * t)], axis=-1)


def _grid(model: str, lo: float, hi: float) -> FloatArray:
    """Starting grid of the nonlinear parameters (log scale)."""
    lr = np.linspace(math.log(lo), math.log(hi), 48 if model == "exponential" else 16)
    if model == "exponential":
        return lr[:, None]
    if model == "oscillator":
        lz = np.log([0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 9.0])
        return np.array([(w, z) for w in lr for z in lz])
    return np.array([(a, b) for i, a in enumerate(lr) for b in lr[i + 2 :]])


def _nonlinear(model: str, theta: FloatArray) -> FloatArray:
    return theta[-1:] if model == "exponential" else theta[-2:]


def _bounds(model: str, span: float) -> tuple[FloatArray, FloatArray]:
    """Box of the nonlinear (log) parameters: rates between 5% of an e-fold over the data and
    5 per step; the oscillator's omega0 up to pi and zeta in [0.02, 50]."""
    lo, hi = math.log(0.05 / span), math.log(5.0)
    if model == "exponential":
        return np.array([lo]), np.array([hi])
    if model == "oscillator":
        return np.array([lo, math.log(0.02)]), np.array([math.log(math.pi), math.log(50.0)])
    return np.array([lo, lo]), np.array([hi, hi])


def _prediction_band(model: str, t: FloatArray, y: FloatArray, plateau: float | None,
                     theta_hat: FloatArray, cov: FloatArray, t_new: FloatArray, level: float,
                     n_nodes: int, rng: np.random.Generator, inflate: float
                     ) -> tuple[FloatArray, FloatArray]:
    """Profile-likelihood prediction interval of a new logged reward at ``t_new``.

    For fixed nonlinear parameters the model is linear, so the least-squares cost with a new
    observation v added is SSE_g + (v - f_g)^2 / (1 + h_g) (h_g the leverage of the new point).
    The band is every v whose profile cost over the nonlinear nodes g stays below
    SSE_min (1 + r t^2 / nu), which is the exact Student-t prediction interval when the model
    is linear (nu residual degrees of freedom; r = inflation for autocorrelated residuals).
    Nodes: uniform on the box of :func:`_bounds` and a 3x-widened Laplace normal at the fit.
    """
    lo, hi = _bounds(model, max(float(t.max()), 1.0))
    dim = lo.size
    n_nodes = max(n_nodes // 4, 50) if dim == 1 else n_nodes  # one rate: a few hundred suffice
    nl_hat = _nonlinear(model, theta_hat)
    c = cov[-dim:, -dim:] * 9.0
    n_g = n_nodes * 2 // 3 if np.all(np.isfinite(c)) else 0
    nodes = [lo + (hi - lo) * rng.random((n_nodes - n_g, dim)), nl_hat[None]]
    if n_g:
        nodes.append(rng.multivariate_normal(nl_hat, c, size=n_g, method="eigh"))
    nl = np.vstack(nodes)
    nl = nl[np.all((nl >= lo) & (nl <= hi), axis=1)]
    target = y if plateau is None else y - plateau

    def design(tt: FloatArray) -> FloatArray:
        B = _basis(model, nl, tt)
        return B if plateau is not None else np.concatenate([np.ones(B.shape[:2] + (1,)), B], 2)

    X = design(t)
    XtX = np.matmul(X.transpose(0, 2, 1), X)
    ridge = 1e-12 * np.trace(XtX, axis1=1, axis2=2)[:, None, None] * np.eye(X.shape[2])
    inv = np.linalg.inv(XtX + ridge)
    coef = np.matmul(inv, (X.transpose(0, 2, 1) @ target)[..., None])  # (g, r, 1)
    sse = np.sum((target - (X @ coef)[..., 0]) ** 2, axis=1)
    Xn = design(t_new)
    f = (Xn @ coef)[..., 0] + (0.0 if plateau is None else plateau)
    lev = np.sum((Xn @ inv) * Xn, axis=2)
    nu = max(y.size - int(theta_hat.size - (plateau is not None)), 1)
    sse_min = max(float(np.nanmin(sse)), 1e-300)
    threshold = sse_min * (1 + inflate * stats.t.ppf((1 + level) / 2, nu) ** 2 / nu)
    half = np.sqrt(np.clip(threshold - sse, 0.0, None)[:, None] * (1 + lev))
    inside = (sse <= threshold)[:, None] & np.isfinite(f) & np.isfinite(half)
    low = np.where(inside, f - half, np.inf).min(axis=0)
    high = np.where(inside, f + half, -np.inf).max(axis=0)
    return low, high


def _varpro(model: str, nl: FloatArray, t: FloatArray, y: FloatArray, plateau: float | None
            ) -> tuple[FloatArray, FloatArray]:
    """Best linear parameters for each nonlinear row: returns (sse (m,), full theta (m, p))."""
    B = _basis(model, nl, t)
    m, n, r = B.shape
    if plateau is None:  # columns [1, B...]: least squares via batched normal equations
        X = np.concatenate([np.ones((m, n, 1)), B], axis=2)
        target = np.broadcast_to(y, (m, n))
    else:
        X, target = B, np.broadcast_to(y - plateau, (m, n))
    XtX = np.einsum("mni,mnj->mij", X, X) + 1e-12 * np.eye(X.shape[2])
    coef = np.linalg.solve(XtX, np.einsum("mni,mn->mi", X, target)[..., None])[..., 0]
    sse = np.sum((target - np.einsum("mni,mi->mn", X, coef)) ** 2, axis=1)
    lin = coef if plateau is None else np.concatenate([np.full((m, 1), plateau), coef], axis=1)
    if model == "two_timescale":
        theta = np.concatenate([lin, nl], axis=1)
    else:  # [P, b] with p = P + b Phi, so p0 = P + b
        theta = np.concatenate([lin[:, :1], lin[:, :1] + lin[:, 1:2], nl], axis=1)
    return sse, theta


@dataclass(frozen=True)
class _Solution:
    model: str
    theta: FloatArray
    free: npt.NDArray[np.bool_]
    jac: FloatArray  # (n, n_free) at theta
    sse: float
    converged: bool
    at_bound: bool


def _solve(model: str, t: FloatArray, y: FloatArray, plateau: float | None) -> _Solution:
    """Grid search with variable projection, then joint least-squares refinement."""
    span = max(float(t.max()), 1.0)
    nl = _grid(model, 0.05 / span, 5.0)
    sse, theta = _varpro(model, nl, t, y, plateau)
    best = theta[int(np.nanargmin(sse))]
    free = np.ones(best.size, dtype=bool)
    free[0] = plateau is None
    lb = np.full(best.size, -np.inf)
    ub = np.full(best.size, np.inf)
    box_lo, box_hi = _bounds(model, span)
    lb[-box_lo.size:], ub[-box_hi.size:] = box_lo, box_hi
    x0 = np.clip(best[free], lb[free] + 1e-9, ub[free] - 1e-9)

    def resid(p: FloatArray) -> FloatArray:
        full = best.copy()
        full[free] = p
        return _model_eval(model, full, t) - y

    # tight tolerances: noise-free curves (simulations, the stiffness tail) need the exact optimum
    res = optimize.least_squares(resid, x0, bounds=(lb[free], ub[free]), method="trf",
                                 x_scale="jac", max_nfev=30 * x0.size, ftol=1e-12, xtol=1e-12,
                                 gtol=1e-12)
    full = best.copy()
    full[free] = res.x
    at_bound = bool(np.any(np.isclose(res.x, lb[free], atol=1e-6) |
                           np.isclose(res.x, ub[free], atol=1e-6)))
    return _Solution(model, full, free, np.asarray(res.jac), float(2 * res.cost),
                     bool(res.status > 0 and np.isfinite(res.cost)), at_bound)


def _information(sse: float, n: int, k: int) -> tuple[float, float]:
    """AICc and BIC with k fitted parameters plus the noise variance."""
    k += 1
    ll = n * math.log(max(sse, 1e-300) / n)
    aicc = ll + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    return aicc, ll + k * math.log(n)


@dataclass(frozen=True, eq=False)
class TrajectoryFit:
    """A reward curve fitted with one closed-form model (chosen by AICc).

    Attributes:
        model: ``"exponential"``, ``"oscillator"`` or ``"two_timescale"``.
        plateau: Fitted p* (the reward the curve relaxes to).
        start: Fitted reward at step 0.
        rate: Asymptotic relaxation rate per step (the slowest mode).
        damping_ratio: zeta of the oscillator; inf for the exponential (overdamped limit), nan
            for the two-timescale form.
        natural_frequency: omega0 in rad/step (oscillator only, else nan).
        r_squared: Coefficient of determination on the fitted points.
        params: Public parameters by name (plus ``rate2``/``weight`` for two_timescale).
        std_errors: Standard errors of ``params`` from the Jacobian (inf when not identified).
        aicc: Corrected Akaike criterion (the selection criterion); bic: Bayesian criterion.
        n_points: Points fitted; n_dropped_nonfinite: points dropped by ``nan_policy="omit"``.
        converged: Whether the least-squares refinement reported convergence.
        noise_std: Residual standard deviation; residual_autocorrelation: lag-1 autocorrelation
            of the residuals (covariances are inflated by (1 + r)/(1 - r) when r > 0).
        candidates: AICc of every model that was fitted.
        message: How the fit was obtained and any caveat.

    Example:
        >>> t = np.arange(60)
        >>> fit = fit_trajectory(0.8 - 0.4 * np.exp(-0.1 * t), models=("exponential",))
        >>> round(fit.plateau, 3), round(fit.rate, 3), fit.regime.value
        (0.8, 0.1, 'monotone')
    """

    model: str
    plateau: float
    start: float
    rate: float
    damping_ratio: float
    natural_frequency: float
    r_squared: float
    params: dict[str, float]
    std_errors: dict[str, float]
    aicc: float
    bic: float
    n_points: int
    n_dropped_nonfinite: int
    converged: bool
    noise_std: float
    residual_autocorrelation: float
    candidates: dict[str, float]
    message: str
    _theta: FloatArray = field(repr=False)
    _data: tuple[FloatArray, FloatArray, float | None] = field(repr=False)
    _solutions: dict[str, tuple[FloatArray, FloatArray]] = field(repr=False)
    _inflate: float = field(repr=False)

    @property
    def time_constant(self) -> float:
        """Steps per e-fold of the slowest mode, 1 / rate."""
        return 1.0 / self.rate if self.rate > 0 else math.inf

    @property
    def regime(self) -> Regime:
        """Regime of the fitted curve (the 1% dead-zone rules of bandit-findings.md section 5)."""
        if self.model == "oscillator" and self.damping_ratio < 1:
            z = self.damping_ratio
            return Regime.OSCILLATORY if z < _ZETA_SECOND_CROSSING else Regime.OVERSHOOT
        if self.model == "two_timescale":
            a, b, c = self._theta[:3]
            r1, r2 = np.exp(self._theta[3:])
            # one crossing of the plateau at t = log(-c/b)/(r2 - r1) > 0 when b, c differ in sign
            if b * c < 0 and r1 != r2 and math.log(-c / b) / (r2 - r1) > 0:
                return Regime.OVERSHOOT
        return Regime.MONOTONE

    def predict(self, steps: Any, *, interval: float = 0.9, n_samples: int = 2000,
                seed: int | None = 0) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Mean reward at ``steps`` and a prediction interval for a logged reward there.

        ``mean`` is the selected model's curve. The interval is a profile-likelihood
        prediction interval of a new logged reward (it covers a noisy observation, not only
        the mean): every value whose best fit, over the rates and the linear parameters, stays
        within the Student-t threshold of the best fit; it reduces to the exact t interval for
        a linear model and keeps the skewed uncertainty of a rate seen over a short prefix.
        It is the union over the selected model and the candidates within 6 AICc units of the
        best (two_timescale only when selected).

        Args:
            steps: Steps to predict at, shape (m,).
            interval: Coverage level of the interval, in (0, 1).
            n_samples: Number of nonlinear-parameter nodes searched for the band.
            seed: Seed of the nodes (the band is deterministic for a fixed seed).

        Returns:
            ``(mean, low, high)``, each of shape (m,).

        Example:
            >>> t = np.arange(40)
            >>> y = 0.8 - 0.4 * np.exp(-0.1 * t) + 0.01 * np.cos(7 * t)
            >>> mean, low, high = fit_trajectory(y, models=("exponential",)).predict([100])
            >>> bool(low[0] < 0.8 < high[0]), round(float(mean[0]), 2)
            (True, 0.8)
        """
        q = check_interval("interval", interval, low=0.0, high=1.0, low_closed=False,
                           high_closed=False)
        t_new = np.atleast_1d(np.asarray(steps, dtype=np.float64))
        mean = _model_eval(self.model, self._theta, t_new)
        rng = np.random.default_rng(seed)
        best = min(self.candidates.values())
        low, high = np.full(t_new.size, np.inf), np.full(t_new.size, -np.inf)
        t, y, pinned = self._data
        for m, (theta, cov) in self._solutions.items():
            # two_timescale is pooled only when selected: on shorter curves its rates are
            # barely identified and its band would swamp the others
            pooled = m == self.model or (m != "two_timescale" and
                                          self.candidates[m] - best <= _BAND_AICC)
            if pooled:
                lo_m, hi_m = _prediction_band(m, t, y, pinned, theta, cov, t_new, q, n_samples,
                                              rng, self._inflate)
                low, high = np.minimum(low, lo_m), np.maximum(high, hi_m)
        return mean, low, high


def _values(model: str, th: FloatArray) -> dict[str, float]:
    """Public parameters from the internal vector."""
    if model == "two_timescale":
        a, b, c = th[:3]
        (r1, b1), (r2, _) = sorted([(math.exp(th[3]), b), (math.exp(th[4]), c)])
        return {"plateau": a, "start": a + b + c, "rate": r1, "rate2": r2,
                "weight": b1 / (b + c) if b + c != 0 else math.nan}
    if model == "oscillator":
        w, z = math.exp(th[2]), math.exp(th[3])
        slow = w / (z + math.sqrt(max(z * z - 1, 0.0))) if z >= 1 else z * w
        return {"plateau": th[0], "start": th[1], "rate": slow, "natural_frequency": w,
                "damping_ratio": z}
    return {"plateau": th[0], "start": th[1], "rate": math.exp(th[2])}


def _public(sol: _Solution, cov: FloatArray) -> tuple[dict[str, float], dict[str, float]]:
    """Public parameters and their standard errors (delta method, numeric gradient)."""
    th = sol.theta
    vals = {k: float(v) for k, v in _values(sol.model, th).items()}
    full_cov = np.zeros((th.size, th.size))
    full_cov[np.ix_(sol.free, sol.free)] = cov
    if not np.all(np.isfinite(cov)):
        return vals, dict.fromkeys(vals, math.inf)
    h = 1e-6
    up = [_values(sol.model, th + d) for d in h * np.eye(th.size)]
    dn = [_values(sol.model, th - d) for d in h * np.eye(th.size)]
    errs = {}
    for name in vals:
        g = np.array([(u[name] - d[name]) / (2 * h) for u, d in zip(up, dn, strict=True)])
        ok = np.all(np.isfinite(g))
        errs[name] = float(np.sqrt(max(g @ full_cov @ g, 0.0))) if ok else math.inf
    return vals, errs


def _covariance(sol: _Solution, n: int, inflate: float) -> FloatArray:
    """s^2 (J^T J)^-1 times the autocorrelation inflation; inf when J is singular."""
    k = int(sol.free.sum())
    norms = np.linalg.norm(sol.jac, axis=0)
    scaled = sol.jac / np.where(norms > 0, norms, 1)
    jtj = scaled.T @ scaled
    if not (np.all(norms > 0) and np.linalg.cond(jtj) < 1e12):  # column-scaled condition
        return np.full((k, k), np.inf)
    return np.linalg.inv(jtj) / np.outer(norms, norms) * sol.sse / (n - k) * inflate


def _finish(sol: _Solution, t: FloatArray, y: FloatArray, plateau: float | None,
            n_dropped: int, solutions: Sequence[_Solution], candidates: dict[str, float],
            note: str) -> TrajectoryFit:
    n, k = y.size, int(sol.free.sum())
    resid = y - _model_eval(sol.model, sol.theta, t)
    s2 = sol.sse / (n - k)
    rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if n > 3 and resid.std() > 0 else 0.0
    inflate = (1 + rho) / (1 - rho) if 0 < rho < 1 else 1.0
    cov = _covariance(sol, n, inflate)
    if not np.all(np.isfinite(cov)):
        note += " Parameters not identified (singular Jacobian): standard errors are inf."
    params, errs = _public(sol, cov)
    aicc, bic = _information(sol.sse, n, k)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return TrajectoryFit(
        model=sol.model, plateau=params["plateau"], start=params["start"], rate=params["rate"],
        damping_ratio=params.get("damping_ratio", math.inf if sol.model == "exponential"
                                 else math.nan),
        natural_frequency=params.get("natural_frequency", math.nan),
        r_squared=1 - sol.sse / ss_tot, params=params, std_errors=errs, aicc=aicc, bic=bic,
        n_points=n, n_dropped_nonfinite=n_dropped, converged=sol.converged,
        noise_std=math.sqrt(s2), residual_autocorrelation=rho, candidates=candidates,
        message=note.strip(), _theta=sol.theta, _data=(t, y, plateau),
        _solutions={s.model: (s.theta, _covariance(s, n, inflate)) for s in solutions},
        _inflate=inflate)


def fit_trajectory(
    rewards: Sequence[float] | FloatArray,
    *,
    steps: Sequence[float] | FloatArray | None = None,
    models: Sequence[ModelName] = MODELS,
    plateau: float | None = None,
    nan_policy: Literal["raise", "omit"] = "raise",
) -> TrajectoryFit:
    """Fit a reward curve with each candidate model and keep the one with the lowest AICc.

    Models (all started from rest at step 0): ``"exponential"`` p* - (p* - p0) e^{-x t};
    ``"oscillator"`` the inertial x'' + 2 zeta omega0 x' + omega0^2 x = 0 (slow S-shaped start);
    ``"two_timescale"`` a + b e^{-r1 t} + c e^{-r2 t} (long runs with a fast rise and a slow
    drift). Linear parameters are solved exactly on a grid of rates (variable projection), then
    all parameters are refined jointly; standard errors come from the Jacobian.

    Args:
        rewards: Logged mean reward per point, shape (n,).
        steps: Optimizer step of each reward (training starts at step 0); default 0..n-1.
        models: Candidate models; ``("exponential",)`` is the fast path (about 2 ms).
        plateau: Pin p* to this value instead of fitting it (one parameter fewer).
        nan_policy: ``"raise"`` on non-finite rewards, or ``"omit"`` them (counted in the fit).

    Returns:
        The selected :class:`TrajectoryFit`; ``candidates`` holds every model's AICc.

    Raises:
        InsufficientDataError: Fewer points than the smallest requested model needs (5 for
            the exponential, 6 for the oscillator, 7 for two_timescale; one fewer with
            ``plateau``), or a constant curve.
        FitError: No model converged (``.partial`` holds the best unconverged fit or None).

    Example:
        >>> t = np.arange(80)
        >>> y = trajectory(t, plateau=0.9, start=0.3, rate=0.05)
        >>> fit = fit_trajectory(y, models=("exponential", "oscillator"))
        >>> fit.model, round(fit.plateau, 3), round(fit.r_squared, 4)
        ('exponential', 0.9, 1.0)
    """
    y, kept = as_finite_1d("rewards", rewards, nan_policy=nan_policy)
    if steps is None:
        t = np.arange(kept.size, dtype=np.float64)[kept]
    else:
        t_all = np.asarray(steps, dtype=np.float64)
        if t_all.shape != kept.shape:
            raise ValueError(f"`steps` must have the shape of `rewards` {kept.shape}, got "
                             f"{t_all.shape}.")
        t = t_all[kept]
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
            raise ValueError("`steps` must be finite, >= 0 and strictly increasing.")
    if not models:
        raise ValueError("`models` must name at least one of " + ", ".join(MODELS) + ", got ().")
    for m in models:
        check_options("models", m, MODELS)
    if plateau is not None:
        plateau = check_interval("plateau", plateau)
    pinned = 1 if plateau is not None else 0
    need = {m: _N_PARAMS[m] - pinned + 2 for m in models}
    usable = [m for m in models if y.size >= need[m]]
    if not usable:
        m0 = min(need, key=need.get)  # type: ignore[arg-type]
        raise InsufficientDataError(
            f"`rewards` must have at least {need[m0]} finite points for the {m0!r} model, got "
            f"{y.size}. Fit a longer curve.")
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
        raise InsufficientDataError(
            f"`rewards` must vary, got a constant curve ({y[0]:g}): no rate can be identified.")
    note = "" if len(usable) == len(models) else (
        "Skipped (too few points): " + ", ".join(sorted(set(models) - set(usable))) + ".")
    sols, candidates = [], {}
    for m in usable:
        try:
            sol = _solve(m, t, y, plateau)
        except (np.linalg.LinAlgError, ValueError):
            continue
        if np.isfinite(sol.sse):
            sols.append(sol)
            candidates[m] = _information(sol.sse, y.size, int(sol.free.sum()))[0]
    good = [s for s in sols if s.converged]
    if not good:
        partial = None if not sols else _finish(
            min(sols, key=lambda s: s.sse), t, y, plateau, int((~kept).sum()), sols, candidates,
            "Not converged.")
        raise FitError(
            f"No trajectory model converged on `rewards` (tried {', '.join(usable)}): the curve "
            "may not relax toward a plateau, or the model is over-parameterised for it; try "
            "models=('exponential',). `.partial` holds the best unconverged fit.", partial=partial)
    best = min(good, key=lambda s: candidates[s.model])
    note += f" Selected {best.model!r} by AICc among {', '.join(candidates)}."
    if best.at_bound:
        note += " A rate or damping parameter sits at its bound: the curve does not determine it."
    return _finish(best, t, y, plateau, int((~kept).sum()), good,
                   {s.model: candidates[s.model] for s in good}, note)

"""Least-squares numerics of `advisor.dynamics.fit_trajectory` (one candidate model at a time).

Conventions: see `advisor._trajectory_models` (parameter vectors, ``mu`` fixed). ``t`` and
``y`` are the fitted steps and rewards, shape (n,); ``plateau`` pins p* when not None.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import special
from scipy import stats

from advisor import _trajectory_models as models


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Solution:
    """One candidate model fitted by least squares (``mu`` is the fixed heavy-ball momentum)."""

    model: str
    theta: FloatArray
    free: npt.NDArray[np.bool_]
    jac: FloatArray  # (n, n_free) at theta
    sse: float
    converged: bool
    at_bound: bool
    mu: float = 0.0


# elements of one (rows, points, columns) design block; longer curves are processed in row
# chunks so that memory stays bounded (a 200k-point curve needed > 6 GB in one block)
_BLOCK_ELEMENTS = 1 << 22


def _chunks(m: int, n: int, r: int) -> list[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(n * r, 1))
    return [slice(i, min(i + step, m)) for i in range(0, m, step)]


def varpro(model: str, nl: FloatArray, t: FloatArray, y: FloatArray, plateau: float | None,
           mu: float = 0.0) -> tuple[FloatArray, FloatArray]:
    """Best linear parameters for each nonlinear row: returns (sse (m,), full theta (m, p))."""
    r = 2 if model == "two_timescale" else 1
    parts = [_varpro_block(model, nl[rows], t, y, plateau, mu)
             for rows in _chunks(nl.shape[0], t.size, r + 1)]
    sse = np.concatenate([p[0] for p in parts])
    lin = np.concatenate([p[1] for p in parts])
    return sse, models.linear_to_theta(model, lin, nl)


def _varpro_block(model: str, nl: FloatArray, t: FloatArray, y: FloatArray,
                  plateau: float | None, mu: float) -> tuple[FloatArray, FloatArray]:
    B = models.basis(model, nl, t, mu)
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
    return sse, lin


def solve(model: str, t: FloatArray, y: FloatArray, plateau: float | None,
          mu: float = 0.0) -> Solution:
    """Grid search with variable projection, then joint least-squares refinement.

    Curves whose range is below 2^-14 (6e-5) are refined in units of a power of two near their
    range (exact in floating point), since the optimizer's gradient tolerance is absolute: a
    curve of range 4e-6 was otherwise left at its grid point (rate off by 2%; range 4e-5 was
    still exact). Other curves are fitted as they are.
    """
    scale = _scale(y)
    if scale != 1.0:
        sol = solve(model, t, y / scale, None if plateau is None else plateau / scale, mu)
        theta = sol.theta.copy()
        lin = models.linear_columns(model)
        theta[lin] *= scale
        jac = sol.jac.copy()  # d resid / d free parameter: the nonlinear columns scale
        jac[:, ~lin[sol.free]] *= scale
        return dataclasses.replace(sol, theta=theta, jac=jac, sse=sol.sse * scale**2)
    span = max(float(t.max()), 1.0)
    sse, theta = varpro(model, models.grid(model, span, mu), t, y, plateau, mu)
    best = theta[int(np.nanargmin(sse))]
    free = np.ones(best.size, dtype=bool)
    free[0] = plateau is None
    lb = np.full(best.size, -np.inf)
    ub = np.full(best.size, np.inf)
    box_lo, box_hi = models.bounds(model, span, mu)
    lb[-box_lo.size:], ub[-box_hi.size:] = box_lo, box_hi
    x0 = np.clip(best[free], lb[free] + 1e-9, ub[free] - 1e-9)

    def resid(p: FloatArray) -> FloatArray:
        full = best.copy()
        full[free] = p
        return models.evaluate(model, full, t, mu) - y

    # tight tolerances: noise-free curves (simulations, the stiffness tail) need the exact optimum
    res = optimize.least_squares(resid, x0, bounds=(lb[free], ub[free]), method="trf",
                                 x_scale="jac", max_nfev=30 * x0.size, ftol=1e-12, xtol=1e-12,
                                 gtol=1e-12)
    full = best.copy()
    full[free] = res.x
    at_bound = bool(np.any(np.isclose(res.x, lb[free], atol=1e-6) |
                           np.isclose(res.x, ub[free], atol=1e-6)))
    return Solution(model, full, free, np.asarray(res.jac), float(2 * res.cost),
                    bool(res.status > 0 and np.isfinite(res.cost)), at_bound, mu)


def _scale(y: FloatArray) -> float:
    """1, or a power of two near the range of a curve whose range is below 2^-14."""
    ptp = float(np.ptp(y))
    if not (0.0 < ptp < 2.0**-14):
        return 1.0
    return 2.0 ** math.floor(math.log2(ptp))


def sse_floor(y: FloatArray) -> float:
    """SSE below which a fit counts as exact: rms 1e-10 of the range (or 4 ulp of the values).

    Noise-free curves are fitted to rounding error by every model that contains them; without
    a floor AICc ranks those fits by rounding noise (a pure exponential was reported as a
    two-timescale fit whose slow mode has zero weight).
    """
    rms = max(1e-10 * float(np.ptp(y)), 4 * np.finfo(float).eps * float(np.abs(y).max()))
    return y.size * rms * rms


def information(sse: float, n: int, k: int, floor: float = 0.0) -> tuple[float, float]:
    """AICc and BIC with k fitted parameters plus the noise variance (SSE floored at ``floor``)."""
    k += 1
    ll = n * math.log(max(sse, floor, 1e-300) / n)
    aicc = ll + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    return aicc, ll + k * math.log(n)


def covariance(sol: Solution, n: int, inflate: float) -> FloatArray:
    """s^2 (J^T J)^-1 times the autocorrelation inflation; inf when J is singular."""
    k = int(sol.free.sum())
    norms = np.linalg.norm(sol.jac, axis=0)
    scaled = sol.jac / np.where(norms > 0, norms, 1)
    jtj = scaled.T @ scaled
    if not (np.all(norms > 0) and np.linalg.cond(jtj) < 1e12):  # column-scaled condition
        return np.full((k, k), np.inf)
    return np.linalg.inv(jtj) / np.outer(norms, norms) * sol.sse / (n - k) * inflate


def public(sol: Solution, cov: FloatArray) -> tuple[dict[str, float], dict[str, float]]:
    """Public parameters and their standard errors (delta method, numeric gradient)."""
    th = sol.theta
    vals = {k: float(v) for k, v in models.values(sol.model, th, sol.mu).items()}
    full_cov = np.zeros((th.size, th.size))
    full_cov[np.ix_(sol.free, sol.free)] = cov
    if not np.all(np.isfinite(cov)):
        return vals, dict.fromkeys(vals, math.inf)
    h = 1e-6
    up = [models.values(sol.model, th + d, sol.mu) for d in h * np.eye(th.size)]
    dn = [models.values(sol.model, th - d, sol.mu) for d in h * np.eye(th.size)]
    errs = {}
    for name in vals:
        g = np.array([(u[name] - d[name]) / (2 * h) for u, d in zip(up, dn, strict=True)])
        ok = np.all(np.isfinite(g))
        errs[name] = float(np.sqrt(max(g @ full_cov @ g, 0.0))) if ok else math.inf
    return vals, errs


def _band_fit(design: Any, nl: FloatArray, t: FloatArray, target: FloatArray
              ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Profile SSE, linear coefficients and (X^T X)^-1 of each nonlinear node (one chunk)."""
    X = design(nl, t)
    XtX = np.matmul(X.transpose(0, 2, 1), X)
    ridge = 1e-12 * np.trace(XtX, axis1=1, axis2=2)[:, None, None] * np.eye(X.shape[2])
    inv = np.linalg.inv(XtX + ridge)
    coef = np.matmul(inv, (X.transpose(0, 2, 1) @ target)[..., None])  # (g, r, 1)
    sse = np.sum((target - (X @ coef)[..., 0]) ** 2, axis=1)
    return sse, coef, inv


def prediction_band(model: str, t: FloatArray, y: FloatArray, plateau: float | None,
                    theta_hat: FloatArray, cov: FloatArray, t_new: FloatArray, level: float,
                    n_nodes: int, rng: np.random.Generator, inflate: float, mu: float = 0.0
                    ) -> tuple[FloatArray, FloatArray]:
    """Profile-likelihood prediction interval of a new logged reward at ``t_new``.

    For fixed nonlinear parameters the model is linear, so the least-squares cost with a new
    observation v added is SSE_g + (v - f_g)^2 / (1 + h_g) (h_g the leverage of the new point).
    The band is every v whose profile cost over the nonlinear nodes g stays below
    SSE_min (1 + r t^2 / nu), which is the exact Student-t prediction interval when the model
    is linear (nu residual degrees of freedom; r = inflation for autocorrelated residuals).
    Nodes: uniform on the box of :func:`advisor._trajectory_models.bounds` and a 3x-widened
    Laplace normal at the fit.
    """
    lo, hi = models.bounds(model, max(float(t.max()), 1.0), mu)
    dim = lo.size
    n_nodes = max(n_nodes // 4, 50) if dim == 1 else n_nodes  # one rate: a few hundred suffice
    nl_hat = models.nonlinear(model, theta_hat)
    c = cov[-dim:, -dim:] * 9.0
    n_g = n_nodes * 2 // 3 if np.all(np.isfinite(c)) else 0
    nodes = [lo + (hi - lo) * rng.random((n_nodes - n_g, dim)), nl_hat[None]]
    if n_g:
        nodes.append(rng.multivariate_normal(nl_hat, c, size=n_g, method="eigh"))
    nl = np.vstack(nodes)
    nl = nl[np.all((nl >= lo) & (nl <= hi), axis=1)]
    target = y if plateau is None else y - plateau

    def design(rows: FloatArray, tt: FloatArray) -> FloatArray:
        B = models.basis(model, rows, tt, mu)
        return B if plateau is not None else np.concatenate([np.ones(B.shape[:2] + (1,)), B], 2)

    nu = max(y.size - int(theta_hat.size - (plateau is not None)), 1)
    r = models.basis(model, nl[:1], t[:1], mu).shape[2] + (plateau is None)
    fits = [_band_fit(design, nl[rows], t, target) for rows in _chunks(nl.shape[0], t.size, r)]
    sse, coef, inv = (np.concatenate([f[i] for f in fits]) for i in range(3))
    sse_min = max(float(np.nanmin(sse)), 1e-300)
    threshold = sse_min * (1 + inflate * stats.t.ppf((1 + level) / 2, nu) ** 2 / nu)
    low, high = np.full(t_new.size, np.inf), np.full(t_new.size, -np.inf)
    for rows in _chunks(nl.shape[0], t_new.size, 2 * r):
        Xn = design(nl[rows], t_new)
        f = (Xn @ coef[rows])[..., 0] + (0.0 if plateau is None else plateau)
        lev = np.sum((Xn @ inv[rows]) * Xn, axis=2)
        half = np.sqrt(np.clip(threshold - sse[rows], 0.0, None)[:, None] * (1 + lev))
        inside = (sse[rows] <= threshold)[:, None] & np.isfinite(f) & np.isfinite(half)
        low = np.minimum(low, np.where(inside, f - half, np.inf).min(axis=0, initial=np.inf))
        high = np.maximum(high, np.where(inside, f + half, -np.inf).max(axis=0,
                                                                        initial=-np.inf))
    return low, high


# rate posterior of the one-rate models: nodes per pass, passes (each zooms into the region of
# non-negligible posterior), and the log-density span kept when zooming
_POST_NODES = 64
_POST_COARSE = 32  # nodes of the zooming passes
_POST_PASSES = 3
_POST_SPAN = 30.0
_POST_STEP = 1e-4  # finite-difference step of the basis in the log-rate


@dataclass(frozen=True)
class RatePosterior:
    """Posterior of a one-rate model on a grid of log-rate nodes (``models.nonlinear`` column).

    ``weight`` (g,) sums to 1; for fixed rate the linear parameters are Student-t with
    ``nu`` degrees of freedom, centre ``coef`` (g, r, 1) and scale matrix ``s2 * inv``.
    """

    nl: FloatArray
    weight: FloatArray
    coef: FloatArray
    inv: FloatArray
    s2: FloatArray
    nu: int


def rate_posterior(model: str, t: FloatArray, y: FloatArray, plateau: float | None,
                   theta_hat: FloatArray, inflate: float, mu: float = 0.0,
                   prior: tuple[float, float] | None = None) -> RatePosterior | None:
    """Posterior of the rate of a one-rate model (exponential, heavy_ball) on a node grid.

    Prior: flat in the linear parameters (plateau, start) and in log sigma; for the log-rate
    theta, Jeffreys' prior given them, the root of the rate's Fisher information with the
    linear parameters profiled out: pi(theta) ~ ||(I - H) dPhi/dtheta|| (H the hat matrix
    of the linear columns). It depends on the steps only, not on the rewards, is invariant
    to how the rate is parameterised, and vanishes where the rate is not identified: at
    rates so slow that the curve over the data is a polynomial trend, whose plateau the data
    do not bound (a flat prior in the log-rate puts most of its mass there and the plateau
    runs away). Posterior density of theta, with the linear parameters and sigma integrated
    out: SSE(theta)^(-nu/2) det(X^T X)^(-1/2) pi(theta), nu = n - r (r linear columns).
    Independent noise is assumed here (the autocorrelation ``inflate`` widens only the
    Student-t scales): tempering the likelihood by it made the posterior of a noise-free
    fit, whose rounding residuals are autocorrelated (inflation ~900), nearly flat.
    Nodes: a uniform grid over the box of :func:`advisor._trajectory_models.bounds`, zoomed
    twice into the region within e^-30 of the highest density, the last grid aligned on the
    fitted rate (so that a noise-free curve's posterior is its fit). None when no node has a
    finite density (rewards that overflow the least squares).

    ``prior`` = (centre, sd) in the nonlinear column's units (the log-rate: log lambda for the
    exponential, log a = log(eta K) for heavy_ball): a normal density in the log-rate (a
    log-normal in the rate) multiplied into Jeffreys' prior, which stays the base measure. A
    wide prior therefore reduces to Jeffreys' (it cannot reopen the slow-rate runaway of a
    flat prior); a tight one dominates it. The node grid is widened to the prior's +-8 sd
    (the upper bound of heavy_ball's box, where the response stops being defined, is kept)
    and 13 nodes at the centre +-6 sd join the coarse pass so that a narrow prior is not
    missed. sd = 0 is a known rate: one node at the centre.
    """
    target = y if plateau is None else y - plateau
    floor = sse_floor(y)
    lo, hi = models.bounds(model, max(float(t.max()), 1.0), mu)
    lo_, hi_ = float(lo[0]), float(hi[0])
    if prior is not None:
        c, s = prior
        lo_ = min(lo_, c - 8 * s)
        hi_ = hi_ if model == "heavy_ball" else max(hi_, c + 8 * s)

    r = 1 + (plateau is None)
    nu = max(y.size - r, 1)

    def evaluate(nodes: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        nl = nodes[:, None]
        # forward difference (backward at the upper bound): relative error ~1e-4 in pi
        step = np.where(nl + _POST_STEP <= hi_, _POST_STEP, -_POST_STEP)
        parts = []
        for rows in _chunks(nl.shape[0], t.size, 2 * r + 1):
            B = models.basis(model, nl[rows], t, mu)
            d = (models.basis(model, nl[rows] + step[rows], t, mu) - B)[..., 0] / step[rows]
            X = B if plateau is not None else np.concatenate([np.ones(B.shape[:2] + (1,)), B],
                                                             2)
            Xt = X.transpose(0, 2, 1)
            XtX = Xt @ X
            ridge = 1e-12 * np.trace(XtX, axis1=1, axis2=2)[:, None, None] * np.eye(r)
            inv = np.linalg.inv(XtX + ridge)
            coef = inv @ (Xt @ target)[..., None]
            sse = np.sum((target - (X @ coef)[..., 0]) ** 2, axis=1)
            proj = X @ (inv @ (Xt @ d[..., None]))
            info = np.linalg.norm(d - proj[..., 0], axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                lw = (-nu / 2 * np.log(np.maximum(sse, floor))
                      + 0.5 * np.linalg.slogdet(inv)[1] + np.log(info))
                if prior is not None and prior[1] > 0:
                    lw = lw - 0.5 * ((nl[rows, 0] - prior[0]) / prior[1]) ** 2
            parts.append((np.where(np.isfinite(lw), lw, -np.inf), sse, coef, inv))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))  # type: ignore

    if prior is not None and prior[1] == 0:  # a known rate
        lw, sse, coef, inv = evaluate(np.array([prior[0]]))
        if not np.isfinite(lw).any():
            return None
        return RatePosterior(np.array([[prior[0]]]), np.ones(1), coef, inv,
                             np.maximum(sse, floor) / nu * inflate, nu)
    nodes = np.linspace(lo_, hi_, _POST_COARSE)
    if prior is not None:
        extra = prior[0] + prior[1] * np.linspace(-6.0, 6.0, 13)
        nodes = np.unique(np.concatenate([nodes, extra[(extra > lo_) & (extra < hi_)]]))
    for i in range(_POST_PASSES - 1):
        lw = evaluate(nodes)[0]
        if not np.isfinite(lw).any():
            break
        keep = np.flatnonzero(lw >= lw.max() - _POST_SPAN)
        a, b = nodes[max(keep[0] - 1, 0)], nodes[min(keep[-1] + 1, nodes.size - 1)]
        nodes = np.linspace(a, b, _POST_NODES if i == _POST_PASSES - 2 else _POST_COARSE)
    # last grid: the same spacing, shifted onto the fitted rate (kept inside the box)
    centre = float(models.nonlinear(model, theta_hat)[0])
    h = (nodes[-1] - nodes[0]) / max(nodes.size - 1, 1)
    if h > 0 and nodes[0] <= centre <= nodes[-1]:
        k = np.arange(math.floor((nodes[0] - centre) / h), math.ceil((nodes[-1] - centre) / h)
                      + 1)
        nodes = np.clip(centre + h * k, lo_, hi_)
        nodes = np.unique(nodes)
    lw, sse, coef, inv = evaluate(nodes)
    if not np.isfinite(lw).any():
        return None
    edges = np.concatenate([nodes[:1], (nodes[1:] + nodes[:-1]) / 2, nodes[-1:]])
    width = np.diff(edges) if nodes.size > 1 else np.ones(1)
    w = np.exp(lw - lw.max()) * width
    w /= w.sum()
    return RatePosterior(nodes[:, None], w, coef, inv, np.maximum(sse, floor) / nu * inflate,
                         nu)


def posterior_median(model: str, post: RatePosterior, t_new: FloatArray,
                     plateau: float | None, mu: float = 0.0) -> FloatArray:
    """Posterior median of the mean reward at ``t_new`` (a mixture of Student-t over nodes).

    For a fixed rate the mean reward at a step is linear in the linear parameters, so it is
    Student-t (centre f_g, scale s_g sqrt(x^T (X^T X)^-1 x)); the mixture's median lies between
    the smallest and the largest centre and is found there by Newton's method on the mixture's
    CDF, safeguarded by bisection, to 1e-10 of the largest |centre|.
    """
    w, loc, lev, s2 = _mixture(model, post, t_new, plateau, mu)
    return _mixture_quantile(w, loc, np.sqrt(s2[:, None] * np.maximum(lev, 0.0)), post.nu, 0.5)


def posterior_band(model: str, post: RatePosterior, t_new: FloatArray, plateau: float | None,
                   level: float, mu: float = 0.0) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed ``level`` posterior predictive interval of a new logged reward at ``t_new``.

    For a fixed rate a new observation is Student-t with centre f_g and scale
    s_g sqrt(1 + x^T (X^T X)^-1 x) (the noise of the new point included, as in the profile
    band); the interval holds the (1 -+ level)/2 quantiles of the mixture over the rate nodes.
    """
    w, loc, lev, s2 = _mixture(model, post, t_new, plateau, mu)
    scale = np.sqrt(s2[:, None] * (1.0 + np.maximum(lev, 0.0)))
    return (_mixture_quantile(w, loc, scale, post.nu, (1 - level) / 2),
            _mixture_quantile(w, loc, scale, post.nu, (1 + level) / 2))


def _mixture(model: str, post: RatePosterior, t_new: FloatArray, plateau: float | None,
             mu: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Weights (g,), centres (g, m), leverages x^T (X^T X)^-1 x (g, m) and s^2 (g,) per node."""
    keep = post.weight > 1e-12 * post.weight.max()
    B = models.basis(model, post.nl[keep], t_new, mu)
    Xn = B if plateau is not None else np.concatenate([np.ones(B.shape[:2] + (1,)), B], 2)
    loc = (Xn @ post.coef[keep])[..., 0] + (0.0 if plateau is None else plateau)
    lev = np.sum((Xn @ post.inv[keep]) * Xn, axis=2)
    return post.weight[keep], loc, lev, post.s2[keep]


def _mixture_quantile(w: FloatArray, loc: FloatArray, scale: FloatArray, nu: int,
                      q: float) -> FloatArray:
    """The ``q`` quantile of sum_g w_g t_nu(loc_g, scale_g), per column (Newton + bisection).

    It lies between the smallest and the largest component quantile; solved there to 1e-10
    of the largest |component quantile| or until the mixture CDF is within 1e-9 of ``q``.
    """
    tq = float(special.stdtrit(nu, q))
    comp = loc + scale * tq
    low, high = comp.min(axis=0), comp.max(axis=0)
    if w.size == 1:
        return comp[0]
    tol = 1e-10 * max(float(np.abs(comp).max()), 1e-300)
    safe = np.where(scale > 0, scale, 1.0)
    c = math.exp(special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)) / math.sqrt(nu * math.pi)
    if q == 0.5:
        v = np.clip(w @ loc, low, high)
    else:  # start from the moment-matched t quantile (the bracket's mean is far off in a tail)
        mean = w @ loc
        var = w @ (loc * loc + scale * scale * (nu / (nu - 2) if nu > 2 else 1.0)) - mean * mean
        v = np.clip(mean + np.sqrt(np.maximum(var, 0.0)) * tq * math.sqrt(max(nu - 2, 1) / nu),
                    low, high)
    for _ in range(100):  # Newton on the mixture CDF, kept inside the bracket by bisection
        z = (v - loc) / safe
        cdf = np.where(scale > 0, special.stdtr(nu, z), (z >= 0).astype(np.float64))
        excess = w @ cdf - q
        density = w @ np.where(scale > 0, c * (1 + z * z / nu) ** (-(nu + 1) / 2) / safe, 0.0)
        low, high = np.where(excess < 0, v, low), np.where(excess < 0, high, v)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = v - excess / density
        step = np.where((step > low) & (step < high), step, 0.5 * (low + high))
        hit = np.abs(excess) <= 1e-9  # the CDF is met: the quantile is within 1e-9 / density
        done = (np.abs(step - v) <= tol) | (high - low <= tol) | hit
        v = np.where(hit, v, step)
        if np.all(done):
            break
    return v

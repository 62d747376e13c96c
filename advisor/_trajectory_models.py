"""Model kernels of `advisor.dynamics.fit_trajectory`: unit responses and parameter vectors.

Conventions (as in `advisor.dynamics`):
    t        optimizer steps, shape (n,); responses start from rest, Phi(0) = 1.
    mu       heavy-ball momentum, FIXED (known from the optimizer), never a fit parameter.
    a        eta*K, the per-step restoring force of the heavy-ball map (a = x (1 - mu)).
    Internal parameter vectors (log of positive rates, so samples stay physical):
        exponential   [P, p0, log lam]
        oscillator    [P, p0, log omega0, log zeta]
        heavy_ball    [P, p0, log a]                        (mu fixed)
        two_timescale [a, b, c, log r1, log r2]   p = a + b e^{-r1 t} + c e^{-r2 t}
    ``theta`` is (p,) or (m, p) for m parameter samples; ``nl`` holds the nonlinear (log)
    columns only, shape (m, q); a basis is (m, n, r) for r linear shape parameters.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


FloatArray = npt.NDArray[np.float64]
# free parameters per model (plateau free); mu of heavy_ball is known, not fitted
N_PARAMS = {"exponential": 3, "oscillator": 4, "heavy_ball": 3, "two_timescale": 5}


def phi_oscillator(t: FloatArray, omega0: FloatArray, zeta: FloatArray) -> FloatArray:
    """Continuous response of x'' + 2 zeta omega0 x' + omega0^2 x = 0 from rest (stable forms)."""
    omega0, zeta = np.asarray(omega0), np.asarray(zeta)
    if (np.ndim(t) == 1 and omega0.ndim == 2 and omega0.shape[1] == 1
            and zeta.shape == omega0.shape):
        # one (omega0, zeta) per row: evaluate only the form each row needs (the same values
        # as below, half the transcendental work)
        over_rows = (omega0**2 * (zeta**2 - 1))[:, 0] > 0
        out = np.empty((omega0.shape[0], np.size(t)))
        if over_rows.any():
            out[over_rows] = _phi_forms(t, omega0[over_rows], zeta[over_rows], under=False)
        if not over_rows.all():
            out[~over_rows] = _phi_forms(t, omega0[~over_rows], zeta[~over_rows], over=False)
        return out
    return _phi_forms(t, omega0, zeta)


def _phi_forms(t: FloatArray, omega0: FloatArray, zeta: FloatArray, *, over: bool = True,
               under: bool = True) -> FloatArray:
    """The overdamped and/or underdamped closed forms, picked by the sign of q."""
    sig = zeta * omega0
    q = omega0**2 * (zeta**2 - 1)
    s = np.sqrt(np.abs(q))
    out_over = out_under = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if over:
            # sig - s, written without cancellation
            slow = omega0 / (zeta + np.sqrt(np.maximum(zeta**2 - 1, 0)))
            e2 = np.exp(-2 * s * t)
            sinh_s = np.where(s > 0, -np.expm1(-2 * s * t) / (2 * s), t)
            out_over = np.exp(-slow * t) * ((1 + e2) / 2 + sig * sinh_s)
        if under:
            out_under = np.exp(-sig * t) * (np.cos(s * t) + sig * t * np.sinc(s * t / np.pi))
    if not under:
        return np.asarray(out_over)
    if not over:
        return np.asarray(out_under)
    return np.where(q > 0, out_over, out_under)


def phi_heavy_ball(t: FloatArray, a: FloatArray, mu: float) -> FloatArray:
    """Exact heavy-ball response from rest, vectorised over ``a`` (any shape broadcasting with t).

    Phi_k = h_k - mu h_{k-1} with h_k = (z1^{k+1} - z2^{k+1}) / (z1 - z2), the roots of
    z^2 - (1 + mu - a) z + mu. Valid for a <= 1 + mu (non-negative real or complex roots), where
    the same formula also interpolates between integer steps.
    """
    a = np.asarray(a)
    if np.ndim(t) == 1 and a.ndim == 2 and a.shape[1] == 1 and a.shape[0] > 1:
        # one a per row: evaluate only the branch (real or complex roots) each row needs (the
        # same values as below, half the transcendental work)
        b = 1.0 + mu - a[:, 0]
        disc = b * b - 4.0 * mu
        real_rows = (np.abs(disc) <= 1e-12 * (1 + b * b)) | (disc >= 0)
        out = np.empty((a.shape[0], np.size(t)))
        for rows in (real_rows, ~real_rows):
            if rows.any():
                out[rows] = _phi_heavy_ball_rows(t, a[rows], mu)
        return out
    return _phi_heavy_ball_rows(t, a, mu)


def _phi_heavy_ball_rows(t: FloatArray, a: FloatArray, mu: float) -> FloatArray:
    """:func:`phi_heavy_ball` on any broadcasting shapes (both branches, picked per element)."""
    b = 1.0 + mu - a
    disc = b * b - 4.0 * mu
    disc = np.where(np.abs(disc) <= 1e-12 * (1 + b * b), 0.0, disc)  # double root (critical)
    sq = np.sqrt(np.abs(disc))
    z1 = (b + sq) / 2  # dominant real root (used where disc >= 0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = np.where(z1 > 0, mu / z1**2, 0.0)  # z2 / z1 in [0, 1]
        u = np.log(np.where(q > 0, q, 1.0))

        def h_real(j: FloatArray) -> FloatArray:
            ratio = np.where(u == 0, j + 1, np.expm1((j + 1) * u) / np.expm1(u))
            ratio = np.where(q > 0, ratio, (j >= 0).astype(np.float64))  # mu = 0: h_j = z1^j
            return np.where(j >= 0, z1**j * ratio, 0.0)

        th = np.arctan2(sq, b)  # complex pair sqrt(mu) e^{+-i th}

        def h_complex(j: FloatArray) -> FloatArray:
            return mu ** (j / 2) * np.sin((j + 1) * th) / np.sin(th)

        if np.all(disc >= 0):
            return np.asarray(h_real(t) - mu * h_real(t - 1))
        if not np.any(disc >= 0):
            return np.asarray(h_complex(t) - mu * h_complex(t - 1))
        real = h_real(t) - mu * h_real(t - 1)
        cplx = h_complex(t) - mu * h_complex(t - 1)
    return np.where(disc >= 0, real, cplx)


def slow_rate(a: float, mu: float) -> float:
    """-ln|z1|, the decay rate of the dominant heavy-ball root (inf when both roots are 0)."""
    b = 1.0 + mu - a
    disc = b * b - 4.0 * mu
    modulus = (abs(b) + math.sqrt(disc)) / 2 if disc >= 0 else math.sqrt(mu)
    return -math.log(modulus) if modulus > 0 else math.inf


def evaluate(model: str, theta: FloatArray, t: FloatArray, mu: float = 0.0) -> FloatArray:
    """Evaluate a model; ``theta`` is (p,) or (m, p), the result (n,) or (m, n)."""
    th = np.atleast_2d(theta)
    col = [th[:, i : i + 1] for i in range(th.shape[1])]
    with np.errstate(over="ignore", invalid="ignore"):
        if model == "two_timescale":
            out = (col[0] + col[1] * np.exp(-np.exp(col[3]) * t)
                   + col[2] * np.exp(-np.exp(col[4]) * t))
        else:
            out = col[0] + (col[1] - col[0]) * basis(model, th[:, 2:], t, mu)[..., 0]
    return out[0] if np.ndim(theta) == 1 else out


def basis(model: str, nl: FloatArray, t: FloatArray, mu: float = 0.0) -> FloatArray:
    """Shapes multiplying the linear parameters for nonlinear values ``nl`` (m, q): (m, n, r)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if model == "exponential":
            return np.exp(-np.exp(nl[:, :1]) * t)[:, :, None]
        if model == "oscillator":
            return phi_oscillator(t, np.exp(nl[:, :1]), np.exp(nl[:, 1:2]))[:, :, None]
        if model == "heavy_ball":
            return phi_heavy_ball(t, np.exp(nl[:, :1]), mu)[:, :, None]
        return np.stack([np.exp(-np.exp(nl[:, :1]) * t), np.exp(-np.exp(nl[:, 1:2]) * t)],
                        axis=-1)


def bounds(model: str, span: float, mu: float = 0.0) -> tuple[FloatArray, FloatArray]:
    """Box of the nonlinear (log) parameters: rates between 5% of an e-fold over the data and
    5 per step; the oscillator's omega0 up to pi and zeta in [0.02, 50]; the heavy-ball a from
    the same slowest rate (a ~ x (1 - mu) when overdamped) up to 1 + mu (real roots >= 0 or a
    complex pair: the response stays defined between integer steps)."""
    lo, hi = math.log(0.05 / span), math.log(5.0)
    if model == "exponential":
        return np.array([lo]), np.array([hi])
    if model == "oscillator":
        return np.array([lo, math.log(0.02)]), np.array([math.log(math.pi), math.log(50.0)])
    if model == "heavy_ball":
        return (np.array([lo + math.log(1 - mu)]),
                np.array([math.log(1 + mu) + math.log1p(-1e-9)]))
    return np.array([lo, lo]), np.array([hi, hi])


def grid(model: str, span: float, mu: float = 0.0) -> FloatArray:
    """Starting grid of the nonlinear parameters (log scale) inside :func:`bounds`."""
    lo, hi = bounds(model, span, mu)
    lr = np.linspace(lo[0], hi[0] if model == "heavy_ball" else math.log(5.0),
                     48 if model in ("exponential", "heavy_ball") else 16)
    if model in ("exponential", "heavy_ball"):
        return lr[:, None]
    if model == "oscillator":
        lz = np.log([0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 9.0])
        return np.array([(w, z) for w in lr for z in lz])
    return np.array([(a, b) for i, a in enumerate(lr) for b in lr[i + 2 :]])


def linear_columns(model: str) -> npt.NDArray[np.bool_]:
    """Mask of the parameters that scale with the rewards (plateau, start, amplitudes)."""
    n_lin = 3 if model == "two_timescale" else 2
    return np.arange(N_PARAMS[model]) < n_lin


def nonlinear(model: str, theta: FloatArray) -> FloatArray:
    """The nonlinear (log) columns of a parameter vector."""
    return theta[-1:] if model in ("exponential", "heavy_ball") else theta[-2:]


def linear_to_theta(model: str, lin: FloatArray, nl: FloatArray) -> FloatArray:
    """Full parameter rows from the linear coefficients [P, b...] and the nonlinear columns."""
    if model == "two_timescale":
        return np.concatenate([lin, nl], axis=1)
    # [P, b] with p = P + b Phi, so p0 = P + b
    return np.concatenate([lin[:, :1], lin[:, :1] + lin[:, 1:2], nl], axis=1)


def values(model: str, th: FloatArray, mu: float = 0.0) -> dict[str, float]:
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
    if model == "heavy_ball":
        a = math.exp(th[2])
        return {"plateau": th[0], "start": th[1], "rate": slow_rate(a, mu),
                "dimensionless_rate": a / (1 - mu), "natural_frequency": math.sqrt(a),
                "damping_ratio": (1 - mu) / (2 * math.sqrt(a)), "momentum": mu}
    return {"plateau": th[0], "start": th[1], "rate": math.exp(th[2])}

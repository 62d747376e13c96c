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

Fits: `fit_trajectory` fits the closed forms to a logged reward curve; with the run's known
heavy-ball momentum it also fits the exact discrete map (mu fixed, eta K free). The model
kernels live in `advisor._trajectory_models`, the least squares and the prediction band in
`advisor._trajectory_fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from enum import Enum
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize  # noqa: F401  (tests patch optimize.least_squares through here)

from advisor import _trajectory_fit as _fitting
from advisor import _trajectory_models as _models
from advisor._trajectory_models import phi_oscillator as _phi_oscillator
from advisor._validation import as_finite_1d
from advisor._validation import as_float_array
from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.exceptions import FitError
from advisor.exceptions import InsufficientDataError


__all__ = [
    "Regime", "TrajectoryFit", "damping_ratio", "natural_frequency", "relaxation_rate",
    "time_constant", "regime", "trajectory", "fit_trajectory",
]

FloatArray = npt.NDArray[np.float64]
ModelName = Literal["exponential", "oscillator", "heavy_ball", "two_timescale"]
# the default candidates; "heavy_ball" joins them when the fit is given a momentum > 0
MODELS: tuple[str, ...] = ("exponential", "oscillator", "two_timescale")
_ALL_MODELS = ("exponential", "oscillator", "heavy_ball", "two_timescale")
# free parameters per model (plateau free); the minimum length is n_params + 2 so that AICc
# (which needs n > k + 1 with k = n_params + 1 for the noise variance) is defined.
_N_PARAMS = _models.N_PARAMS
# 1% dead-zone visibility of a from-rest oscillator (bandit-findings.md section 5):
# second crossing visible iff exp(-2 pi zeta / sqrt(1 - zeta^2)) > 1%.
_ZETA_SECOND_CROSSING = 0.591
# candidate models whose prediction bands are pooled (AICc units above the best): a model that
# is not clearly rejected keeps its band, which guards the interval against misspecification
_BAND_AICC = 6.0
# AICc units within which the model with fewer parameters is preferred (see _select)
_SELECT_AICC = 0.5
# models with one nonlinear parameter (the rate): predict() reports their posterior median
_ONE_RATE = ("exponential", "heavy_ball")


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
    x = as_float_array("rate", rate, low=0.0,
                       hint="The rate is the dimensionless eta*K/(1-mu) per step.")
    mu = as_float_array("momentum", momentum, low=0.0, high=1.0, high_closed=False,
                        hint="Heavy-ball momentum mu = 1 never relaxes.")
    try:
        return np.broadcast_arrays(x, mu)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"`rate` and `momentum` must broadcast to one shape, got shapes "
                         f"{x.shape} and {mu.shape}.") from None


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
    # real non-negative dominant root: no crossing (z1 = 0 is the one-step deadbeat x=1, mu=0)
    monotone = (z1.imag == 0) & (z1.real >= 0)
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
    t = as_float_array("steps", steps, low=0.0)
    x = check_interval("rate", rate, low=0.0, low_closed=False)
    mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
    p_star = check_interval("plateau", plateau)
    gap = p_star - check_interval("start", start)
    if model != "two_timescale" and (rate2 is not None or weight is not None):
        raise ValueError(f"`rate2` and `weight` must be None for model={model!r}, got "
                         f"rate2={rate2!r}, weight={weight!r}. They set the second mode of "
                         "model='two_timescale'.")
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
# Fitting (kernels in advisor._trajectory_models, least squares in advisor._trajectory_fit)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TrajectoryFit:
    """A reward curve fitted with closed-form models (the best by AICc is reported).

    Attributes:
        model: ``"exponential"``, ``"oscillator"``, ``"heavy_ball"`` or ``"two_timescale"``.
        plateau: Fitted p* (the reward the curve relaxes to).
        start: Fitted reward at step 0.
        rate: Asymptotic relaxation rate per step (the slowest mode).
        damping_ratio: zeta of the oscillator or the heavy ball ((1 - mu) / (2 sqrt(eta K)));
            inf for the exponential (overdamped limit), nan for the two-timescale form.
        natural_frequency: omega0 in rad/step (oscillator and heavy ball, else nan).
        r_squared: Coefficient of determination on the fitted points.
        params: Public parameters by name (plus ``rate2``/``weight`` for two_timescale;
            ``dimensionless_rate`` x = eta K / (1 - mu) and ``momentum`` for heavy_ball).
        std_errors: Standard errors of ``params`` from the Jacobian (inf when not identified).
        aicc: Corrected Akaike criterion (the selection criterion); bic: Bayesian criterion.
        n_points: Points fitted; n_dropped_nonfinite: points dropped by ``nan_policy="omit"``.
        converged: Whether the least-squares refinement reported convergence.
        noise_std: Residual standard deviation; residual_autocorrelation: lag-1 autocorrelation
            of the residuals (covariances are inflated by (1 + r)/(1 - r) when r > 0).
        candidates: AICc of every model that was fitted.
        momentum: The heavy-ball mu given to the fit (None when not given).
        message: How the fit was obtained and any caveat.
        rate_prior: The ``(centre, log_sd)`` rate prior given to the fit (None when not given);
            it enters :meth:`predict` only (see `fit_trajectory`).

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
    momentum: float | None
    message: str
    _theta: FloatArray = field(repr=False)
    _data: tuple[FloatArray, FloatArray, float | None] = field(repr=False)
    _solutions: dict[str, tuple[FloatArray, FloatArray]] = field(repr=False)
    _inflate: float = field(repr=False)
    # the rate posterior of predict() per one-rate model, computed once per fit
    _posterior: dict[str, Any] = field(default_factory=dict, repr=False)
    rate_prior: tuple[float, float] | None = None

    @property
    def time_constant(self) -> float:
        """Steps per e-fold of the slowest mode, 1 / rate."""
        return 1.0 / self.rate if self.rate > 0 else math.inf

    @property
    def regime(self) -> Regime:
        """Regime of the fitted curve (the 1% dead-zone rules of bandit-findings.md section 5)."""
        if self.model == "heavy_ball":  # the exact discrete roots at the known momentum
            return regime(self.params["dimensionless_rate"], self.params["momentum"])
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

        ``mean`` is the point prediction of the mean reward. For the one-rate models
        (exponential, heavy_ball) it is the posterior median, the rate integrated over its
        posterior (flat prior on the plateau and the start, Jeffreys' prior on the rate; see
        `advisor._trajectory_fit.rate_posterior`): it equals the fitted curve where the data
        pin the rate, and it does not swing with the least-squares rate where they do not
        (on a prefix with 1-1.5 e-folds the plateau extrapolated by least squares has heavy
        tails). For the oscillator and two_timescale it is the reported model's curve; the
        fitted parameters and R^2 are least squares for every model. With a ``rate_prior``
        (see `fit_trajectory`) the log-normal prior on the rate multiplies Jeffreys' prior.

        The interval is a profile-likelihood prediction interval of a new logged reward (it
        covers a noisy observation, not only the mean): every value whose best fit, over the
        rates and the linear parameters, stays within the Student-t threshold of the best fit;
        it reduces to the exact t interval for a linear model and keeps the skewed uncertainty
        of a rate seen over a short prefix. It is the union over the reported model and the
        candidates within 6 AICc units of the best (two_timescale only when reported). With a
        ``rate_prior`` it is instead the equal-tailed posterior predictive interval of a new
        logged reward (the mixture over the rate posterior, prior included; union over the
        same candidates): a profile band ignores any prior, so it would throw the pilot's
        information away exactly where the prefix does not pin the rate.

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
        n_samples = check_int("n_samples", n_samples, low=1)
        t_new = np.atleast_1d(as_float_array(
            "steps", steps, low=0.0, hint="Training starts at step 0 (as in the fit)."))
        mu = 0.0 if self.momentum is None else self.momentum
        t, y, pinned = self._data
        post = self._rate_posterior(self.model, self._theta)
        if post is not None:
            mean = _fitting.posterior_median(self.model, post, t_new, pinned, mu)
        else:  # two-rate models, or no finite posterior density (overflowing rewards)
            mean = _models.evaluate(self.model, self._theta, t_new, mu)
        rng = np.random.default_rng(seed)
        best = min(self.candidates.values())
        low, high = np.full(t_new.size, np.inf), np.full(t_new.size, -np.inf)
        for m, (theta, cov) in self._solutions.items():
            # two_timescale is pooled only when reported: on shorter curves its rates are
            # barely identified and its band would swamp the others
            pooled = m == self.model or (m != "two_timescale" and
                                          self.candidates[m] - best <= _BAND_AICC)
            if not pooled:
                continue
            post_m = None if self.rate_prior is None else self._rate_posterior(m, theta)
            if post_m is not None:
                lo_m, hi_m = _fitting.posterior_band(m, post_m, t_new, pinned, q, mu)
            else:
                lo_m, hi_m = _fitting.prediction_band(m, t, y, pinned, theta, cov, t_new, q,
                                                      n_samples, rng, self._inflate, mu)
            low, high = np.minimum(low, lo_m), np.maximum(high, hi_m)
        return mean, low, high

    def _rate_posterior(self, model: str, theta: FloatArray) -> _fitting.RatePosterior | None:
        """Rate posterior of a one-rate candidate (cached; None for two-rate models)."""
        if model not in _ONE_RATE:
            return None
        if model not in self._posterior:
            mu = 0.0 if self.momentum is None else self.momentum
            t, y, pinned = self._data
            prior = None if self.rate_prior is None else _prior_log_rate(model, *self.rate_prior,
                                                                         mu)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._posterior[model] = _fitting.rate_posterior(
                    model, t, y, pinned, theta, self._inflate, mu, prior)
        return self._posterior[model]


def _select(good: Sequence[_fitting.Solution], candidates: dict[str, float]
            ) -> _fitting.Solution:
    """The model with the fewest parameters among those within 0.5 AICc units of the best.

    On a short noisy prefix a flexible model wins by chance and extrapolates badly: the median
    error of the final reward predicted from a 25% prefix of single-exponential curves (100
    samples per step) is 0.054 with the plain AICc choice, 0.049 with this near-tie rule (the
    exponential-only fit's value). Wider margins (1 or the textbook 2 units) gain nothing more
    there and lose more on slow-start heavy-ball curves fitted without their momentum (0.16
    plain, 0.17 at 0.5, 0.18 at 1, 0.23 at 2 units). benchmarks/fit_quality.py curves, 80 per
    cell (another seed, 100 per cell: 0.18 / 0.17 / 0.17 / 0.19, exponential curves unchanged).
    """
    best = min(candidates[s.model] for s in good)
    close = [s for s in good if candidates[s.model] <= best + _SELECT_AICC]
    fewest = min(_N_PARAMS[s.model] for s in close)
    return min((s for s in close if _N_PARAMS[s.model] == fewest),
               key=lambda s: candidates[s.model])


def _finish(sol: _fitting.Solution, t: FloatArray, y: FloatArray, plateau: float | None,
            n_dropped: int, solutions: Sequence[_fitting.Solution],
            candidates: dict[str, float], momentum: float | None, note: str,
            rate_prior: tuple[float, float] | None = None) -> TrajectoryFit:
    n, k = y.size, int(sol.free.sum())
    resid = y - _models.evaluate(sol.model, sol.theta, t, sol.mu)
    s2 = sol.sse / (n - k)
    rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if n > 3 and resid.std() > 0 else 0.0
    inflate = (1 + rho) / (1 - rho) if 0 < rho < 1 else 1.0
    cov = _fitting.covariance(sol, n, inflate)
    if not np.all(np.isfinite(cov)):
        note += " Parameters not identified (singular Jacobian): standard errors are inf."
    params, errs = _fitting.public(sol, cov)
    aicc, bic = _fitting.information(sol.sse, n, k, _fitting.sse_floor(y))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return TrajectoryFit(
        model=sol.model, plateau=params["plateau"], start=params["start"], rate=params["rate"],
        damping_ratio=params.get("damping_ratio", math.inf if sol.model == "exponential"
                                 else math.nan),
        natural_frequency=params.get("natural_frequency", math.nan),
        r_squared=1 - sol.sse / ss_tot, params=params, std_errors=errs, aicc=aicc, bic=bic,
        n_points=n, n_dropped_nonfinite=n_dropped, converged=sol.converged,
        noise_std=math.sqrt(s2), residual_autocorrelation=rho, candidates=candidates,
        momentum=momentum, message=note.strip(), _theta=sol.theta,
        _data=(t, y, plateau),
        _solutions={s.model: (s.theta, _fitting.covariance(s, n, inflate)) for s in solutions},
        _inflate=inflate, rate_prior=rate_prior)


def _check_steps(steps: Any, kept: npt.NDArray[np.bool_]) -> FloatArray:
    if steps is None:
        return np.arange(kept.size, dtype=np.float64)[kept]
    t_all = np.asarray(steps, dtype=np.float64)
    if t_all.shape != kept.shape:
        raise ValueError(f"`steps` must have the shape of `rewards` {kept.shape}, got "
                         f"{t_all.shape}.")
    t = t_all[kept]
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise ValueError("`steps` must be finite, >= 0 and strictly increasing.")
    return t


def _check_rate_prior(rate_prior: Any) -> tuple[float, float] | None:
    """``(centre, log_sd)`` as floats: centre > 0, log_sd >= 0, both finite."""
    if rate_prior is None:
        return None
    if isinstance(rate_prior, np.ndarray) and rate_prior.ndim == 1:
        rate_prior = rate_prior.tolist()
    if isinstance(rate_prior, (str, bytes, Mapping)) or not isinstance(rate_prior, Sequence):
        raise TypeError(f"`rate_prior` must be a pair (centre, log_sd) of numbers, got "
                        f"{type(rate_prior).__name__} {rate_prior!r}. Example: (0.02, 0.25) "
                        "for a dimensionless rate eta*K/(1-mu) of 0.02 known within ~25%.")
    if len(rate_prior) != 2:
        raise ValueError(f"`rate_prior` must be a pair (centre, log_sd), got {len(rate_prior)} "
                         f"values {tuple(rate_prior)!r}. Example: (0.02, 0.25).")
    centre = check_interval("rate_prior[0]", rate_prior[0], low=0.0, low_closed=False,
                            hint="The centre is the dimensionless rate x = eta*K/(1-mu) > 0 "
                                 "(StiffnessEstimate.rate(learning_rate, momentum=mu)).")
    sd = check_interval("rate_prior[1]", rate_prior[1], low=0.0,
                        hint="The log standard deviation is >= 0 (0: the rate is known), e.g. "
                             "sqrt((std_error / K)**2 + 0.23**2).")
    return centre, sd


def _prior_log_rate(model: str, centre: float, sd: float, mu: float) -> tuple[float, float]:
    """The prior in a one-rate model's nonlinear column: log(eta K) or log(relaxation rate)."""
    if model == "heavy_ball":
        return math.log(centre * (1 - mu)), sd
    lam = float(relaxation_rate(centre, mu))
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"`rate_prior[0]` must be a dimensionless rate at which the map relaxes "
                         f"(eta*K < 2(1 + mu)), got {centre!r} at momentum {mu!r}.")
    return math.log(lam), sd


def _check_models(models: Sequence[str] | None, momentum: float | None,
                  rate_prior: tuple[float, float] | None = None) -> tuple[str, ...]:
    if models is None and rate_prior is not None:
        return ("exponential",) + (("heavy_ball",) if momentum else ())
    if models is None:
        return MODELS + (("heavy_ball",) if momentum else ())
    if isinstance(models, str) or not models:
        raise ValueError("`models` must name at least one of " + ", ".join(_ALL_MODELS) +
                         f", got {models!r}.")
    for m in models:
        check_options("models", m, _ALL_MODELS)
    if "heavy_ball" in models and momentum is None:
        raise ValueError("`momentum` must be given with model 'heavy_ball', got None. Pass the "
                         "heavy-ball momentum of the optimizer (SGD momentum; not adam_beta1).")
    two_rate = [m for m in models if m not in _ONE_RATE]
    if rate_prior is not None and two_rate:
        raise ValueError(f"`models` must be one-rate models ('exponential', 'heavy_ball') with "
                         f"`rate_prior`, got {tuple(models)!r}. The prior is on the one rate of "
                         "those models; drop " + ", ".join(map(repr, two_rate)) + ".")
    return tuple(models)


def fit_trajectory(
    rewards: Sequence[float] | FloatArray,
    *,
    steps: Sequence[float] | FloatArray | None = None,
    models: Sequence[ModelName] | None = None,
    plateau: float | None = None,
    momentum: float | None = None,
    nan_policy: Literal["raise", "omit"] = "raise",
    rate_prior: tuple[float, float] | None = None,
) -> TrajectoryFit:
    """Fit a reward curve with each candidate model and report the best by AICc.

    The reported model is the one with the fewest parameters among the candidates within 0.5
    AICc units of the lowest: a flexible model that wins a short, noisy prefix by a near-tie
    extrapolates badly.

    Models (all started from rest at step 0): ``"exponential"`` p* - (p* - p0) e^{-x t};
    ``"oscillator"`` the inertial x'' + 2 zeta omega0 x' + omega0^2 x = 0 (slow S-shaped start);
    ``"two_timescale"`` a + b e^{-r1 t} + c e^{-r2 t} (long runs with a fast rise and a slow
    drift); ``"heavy_ball"`` the exact discrete heavy-ball map from rest at the KNOWN momentum
    mu, p* - (p* - p0) Phi_k(eta K, mu), with three free parameters (p*, p0, eta K). Linear
    parameters are solved exactly on a grid of rates (variable projection), then all
    parameters are refined jointly; standard errors come from the Jacobian.

    Args:
        rewards: Logged mean reward per point, shape (n,).
        steps: Optimizer step of each reward (training starts at step 0); default 0..n-1.
        models: Candidate models; ``None`` (default): exponential, oscillator and
            two_timescale, plus heavy_ball when ``momentum`` > 0. ``("exponential",)`` is the
            fast path (about 4 ms on 100 points).
        plateau: Pin p* to this value instead of fitting it (one parameter fewer).
        momentum: Heavy-ball momentum mu in [0, 1) of the run (``torch.optim.SGD``'s
            ``momentum``; NOT Adam's beta1, an EMA). Enables the ``"heavy_ball"`` model.
        nan_policy: ``"raise"`` on non-finite rewards, or ``"omit"`` them (counted in the fit).
        rate_prior: ``(centre, log_sd)``, a log-normal prior on the rate: log(rate) ~
            N(log centre, log_sd^2). ``centre`` is the DIMENSIONLESS rate x = eta*K/(1 - mu)
            (what `advisor.StiffnessEstimate.rate` returns for a learning rate and heavy-ball
            momentum; ``trajectory(rate=x)``; ``params["dimensionless_rate"]`` of a
            heavy_ball fit). For ``"heavy_ball"`` the prior is on eta*K = x (1 - mu); for
            ``"exponential"`` on its per-step rate lambda = ``relaxation_rate(x, momentum)``
            (the slow root of the heavy-ball map; -ln(1 - x) at mu = 0, ~x when overdamped),
            so pass the run's ``momentum`` for an inertial curve. ``log_sd`` >= 0 is the
            standard deviation of log(rate): the stiffness's relative error plus the model's
            scatter, sqrt((std_error/K)^2 + s_model^2); 0 means the rate is known. Only the
            one-rate models take it: with a prior, ``models=None`` means the exponential (and
            heavy_ball when ``momentum`` > 0), and a two-rate model is an error. The prior
            multiplies Jeffreys' prior in the rate posterior (a wide prior falls back to it),
            so it changes :meth:`TrajectoryFit.predict`: the point prediction (the posterior
            median) and the interval (the posterior predictive interval, the profile band
            when no prior is given). The fitted parameters, R^2, AICc and the model choice
            stay least squares on the data alone (not a MAP): they describe what this curve
            says, so ``fit.rate`` against the prior shows whether a run follows the pilot's
            stiffness. With a prior whose centre is off by a draw of the stated log_sd (0.25),
            the 90% interval covers the true final mean from a 25% prefix in 0.92-0.99 of the
            curves in every cell of benchmarks/fit_quality.py (session 5 of its results); a
            log_sd that understates the centre's error makes it overconfident (half the true
            error: 0.88, a quarter: 0.65 on slow-start heavy-ball curves).

    Returns:
        The reported :class:`TrajectoryFit`; ``candidates`` holds every model's AICc.

    Raises:
        InsufficientDataError: Fewer points than the smallest requested model needs (5 for
            the exponential and heavy ball, 6 for the oscillator, 7 for two_timescale; one
            fewer with ``plateau``), or a constant curve.
        FitError: No model converged (``.partial`` holds the best unconverged fit or None).
        ValueError: Bad ``steps``, ``models``, ``plateau``, ``momentum`` or ``rate_prior``
            (``TypeError`` for a non-number or a ``rate_prior`` that is not a pair).

    Example:
        >>> t = np.arange(80)
        >>> y = trajectory(t, plateau=0.9, start=0.3, rate=0.05)
        >>> fit = fit_trajectory(y, models=("exponential", "oscillator"))
        >>> fit.model, round(fit.plateau, 3), round(fit.r_squared, 4)
        ('exponential', 0.9, 1.0)
        >>> y = trajectory(t, plateau=0.9, start=0.3, rate=0.02, momentum=0.9, model="heavy_ball")
        >>> fit = fit_trajectory(y, momentum=0.9)
        >>> fit.model, round(fit.params["dimensionless_rate"], 4)
        ('heavy_ball', 0.02)
        >>> noisy = y[:20] + 0.03 * np.sin(2.3 * t[:20])  # 20 of 80 steps: rate not pinned
        >>> hb = dict(models=("heavy_ball",), momentum=0.9)
        >>> round(float(fit_trajectory(noisy, **hb).predict([79])[0][0]), 2)
        0.43
        >>> fit = fit_trajectory(noisy, **hb, rate_prior=(0.02, 0.1))  # x = eta K / (1 - mu)
        >>> [round(float(v[0]), 2) for v in fit.predict([79])], round(float(y[79]), 2)
        ([0.77, 0.67, 0.88], 0.79)
    """
    y, kept = as_finite_1d("rewards", rewards, nan_policy=nan_policy)
    t = _check_steps(steps, kept)
    if momentum is not None:
        momentum = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
    rate_prior = _check_rate_prior(rate_prior)
    models = _check_models(models, momentum, rate_prior)
    mu = 0.0 if momentum is None else momentum
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
    floor = _fitting.sse_floor(y)
    for m in usable:
        try:
            sol = _fitting.solve(m, t, y, plateau, mu)
        except (np.linalg.LinAlgError, ValueError):
            continue
        if np.isfinite(sol.sse):
            sols.append(sol)
            candidates[m] = _fitting.information(sol.sse, y.size, int(sol.free.sum()), floor)[0]
    n_dropped = int((~kept).sum())
    good = [s for s in sols if s.converged]
    if not good:
        partial = None if not sols else _finish(
            min(sols, key=lambda s: s.sse), t, y, plateau, n_dropped, sols, candidates,
            momentum, "Not converged.")
        raise FitError(
            f"No trajectory model converged on `rewards` (tried {', '.join(usable)}): the curve "
            "may not relax toward a plateau, or the model is over-parameterised for it; try "
            "models=('exponential',). `.partial` holds the best unconverged fit.", partial=partial)
    best = _select(good, candidates)
    note += (f" Selected {best.model!r} by AICc among {', '.join(candidates)} (the fewest "
             f"parameters within {_SELECT_AICC} units of the best).")
    if best.at_bound:
        note += " A rate or damping parameter sits at its bound: the curve does not determine it."
    if rate_prior is not None:  # a centre the map cannot relax at fails here, not in predict()
        for s in good:
            _prior_log_rate(s.model, *rate_prior, mu)
    return _finish(best, t, y, plateau, n_dropped, good,
                   {s.model: candidates[s.model] for s in good}, momentum, note, rate_prior)

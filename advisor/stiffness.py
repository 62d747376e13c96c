"""Stiffness K of the mean-reward dynamics, measured from short pilot runs.

K is the relaxation rate of the mean reward per unit learning rate at the plateau, in heavy-ball
units: a curve run at learning rate eta and heavy-ball momentum mu relaxes at eta*K/(1-mu) per
step (theory.md section 3). Two estimators (bandit-findings.md section 3, real-trl-findings.md
section 2):

* ``"tail"`` (clean curves, e.g. simulations): an exponential with a free plateau fitted on the
  linear tail, where |p - p_end| is below 0.1-20% of the rise. Its per-step rate lambda is the
  slow root z = exp(-lambda) of the heavy-ball map, so eta*K = (1 - z)(1 - mu/z) exactly
  (-> (1 - e^-lambda)(1 - mu) near z = 1). Never a global one-exponential fit (biased +-40%).
* ``"pinned"`` (noisy or short curves): the exact heavy-ball trajectory from rest fitted to the
  whole curve with the plateau pinned (given, or the median plateau of the curves that saturate).

AdamW curves give K per unit lr directly (``momentum`` must be 0: adam_beta1 is not a heavy-ball
momentum and adds no 1/(1 - beta1) gain). A frozen-sampler curve relaxes at eta*K_c, a sliding-lag
curve at the slow root of z^{d+1} - (1+mu-eta K_c) z^d + mu z^{d-1} + eta (K - K_c); either gives
the split K = K_c + K_o.

Conventions:
    eta learning rate; mu heavy-ball momentum; K, K_c, K_o stiffness and its current-policy and
    sampling-policy parts (per unit eta); lambda per-step rate; z = exp(-lambda).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize

from advisor._validation import as_finite_1d
from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.dynamics import _phi_heavy_ball
from advisor.dynamics import fit_trajectory
from advisor.dynamics import relaxation_rate
from advisor.exceptions import AdvisorWarning
from advisor.exceptions import FitError
from advisor.exceptions import InsufficientDataError


__all__ = ["PilotCurve", "StiffnessEstimate", "estimate_stiffness"]

FloatArray = npt.NDArray[np.float64]
_MIN_POINTS = 8  # a pinned fit has 2 parameters; fewer points leave no residual to judge it
_TAIL_FRACTIONS = (1e-3, 1e-2, 0.05, 0.2)  # tail windows, from most to least linear
_TAIL_MIN_POINTS = 12
_CLEAN = 2e-3  # tail residual sd / tail amplitude below which a curve counts as noise-free
_SATURATED_EFOLDS = 3.0  # a curve whose fitted rate * length >= 3 has done 95% of its rise
# |frozen plateau - on-policy plateau| / on-policy rise above which a frozen curve is suspect
_FROZEN_PLATEAU_TOLERANCE = 0.1
_LINEARITY_SPREAD = 0.2  # (max - min)/median of K across learning rates that flags nonlinearity


@dataclass(frozen=True, kw_only=True)
class PilotCurve:
    """One pilot run: the mean reward per optimizer step and the knobs it ran with.

    Attributes:
        rewards: ``rewards[k]`` is the mean reward of the completions used at step k (TRL's
            logged ``reward``). For ``refresh_scheme="frozen"`` it must be the *current*
            policy's reward (evaluated), since the frozen sampler's own reward is constant.
            Non-finite entries are kept here and handled by ``estimate_stiffness(nan_policy=)``.
        learning_rate: eta > 0.
        momentum: Heavy-ball mu in [0, 1) (SGD only; 0 for AdamW).
        optimizer: ``"sgd"`` (heavy ball) or ``"adamw"``.
        refresh_interval: K_ref >= 1 (piecewise) or the lag d >= 1 (sliding).
        refresh_scheme: ``"piecewise"`` (TRL), ``"sliding"`` (theta_old = theta_{k-d}) or
            ``"frozen"`` (sampler held fixed: the curve measures K_c). Piecewise with
            ``refresh_interval >= len(rewards)`` is a frozen sampler too. The sampler must be
            frozen at the converged (plateau) policy, the current policy started slightly off
            it; a sampler frozen at the start measures another point (a warning says so).
        samples_per_step: Completions per optimizer step (recorded; None if unknown).
        seed: Seed of the run (recorded).

    Example:
        >>> curve = PilotCurve(rewards=[0.5, 0.6, 0.66, 0.7], learning_rate=0.01)
        >>> curve.is_on_policy, curve.n_steps
        (True, 4)
    """

    rewards: tuple[float, ...]
    learning_rate: float
    momentum: float = 0.0
    optimizer: Literal["sgd", "adamw"] = "sgd"
    refresh_interval: int = 1
    refresh_scheme: Literal["piecewise", "sliding", "frozen"] = "piecewise"
    samples_per_step: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        def setf(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        y, _ = as_finite_1d("rewards", self.rewards, nan_policy="omit", min_length=0)
        raw = np.asarray(self.rewards, dtype=np.float64).ravel()
        if raw.size == 0:
            raise ValueError("`rewards` must be non-empty, got an empty sequence.")
        if y.size < 3:
            raise ValueError(f"`rewards` must have at least 3 finite values, got {y.size}.")
        if np.ptp(y) == 0:
            raise ValueError(f"`rewards` must vary, got a constant curve ({y[0]:g}); a pilot "
                             "that does not move cannot measure a rate.")
        setf("rewards", tuple(float(v) for v in raw))
        setf("learning_rate", check_interval("learning_rate", self.learning_rate, low=0.0,
                                             low_closed=False))
        setf("momentum", check_interval(
            "momentum", self.momentum, low=0.0, high=1.0, high_closed=False,
            hint="mu = 1 never relaxes; use mu < 1."))
        check_options("optimizer", self.optimizer, ("sgd", "adamw"))
        check_options("refresh_scheme", self.refresh_scheme, ("piecewise", "sliding", "frozen"))
        if self.optimizer == "adamw" and self.momentum != 0:
            raise ValueError(f"`momentum` must be 0 for optimizer='adamw', got {self.momentum!r}. "
                             "adam_beta1 is not a heavy-ball momentum; do not pass it here.")
        setf("refresh_interval", check_int("refresh_interval", self.refresh_interval, low=1))
        if self.samples_per_step is not None:
            setf("samples_per_step", check_int("samples_per_step", self.samples_per_step, low=1))
        if self.seed is not None:
            setf("seed", check_int("seed", self.seed))

    @property
    def n_steps(self) -> int:
        """Number of steps (rewards), finite or not."""
        return len(self.rewards)

    @property
    def is_frozen(self) -> bool:
        """Whether the sampler never refreshes during the curve (it measures K_c)."""
        return self.refresh_scheme == "frozen" or (
            self.refresh_scheme == "piecewise" and self.refresh_interval >= self.n_steps)

    @property
    def is_on_policy(self) -> bool:
        """Whether the sampler is refreshed every step (it measures K)."""
        return self.refresh_scheme == "piecewise" and self.refresh_interval == 1


@dataclass(frozen=True, kw_only=True)
class StiffnessEstimate:
    """Stiffness measured from pilot curves.

    Attributes:
        stiffness: K per unit learning rate (heavy-ball units for SGD, AdamW units for AdamW).
        stiffness_current: K_c from frozen or sliding-lag curves, None when none was given.
        stiffness_sampler: K_o = K - K_c, None when K_c was not measured.
        std_error, std_error_current, std_error_sampler: Standard errors (the larger of the
            fit-based and the across-curve error).
        plateau: The plateau the on-policy curves relax to (pinned value or tail fit).
        rates: Per-step rate lambda of each curve, in input order.
        curve_stiffness: K (or K_c for frozen/lagged curves) of each curve, in input order.
        learning_rates: Learning rate of each curve.
        linear: False when K per unit lr varies by more than 20% across learning rates.
        spread: (max - min)/median of K across distinct learning rates (0 for one rate).
        optimizer: ``"sgd"`` or ``"adamw"``.
        method: ``"tail"``, ``"pinned"`` or ``"tail+pinned"`` (mixed curves).
        n_curves: Curves used.
        message: How the estimate was obtained and its caveats.
        n_dropped_nonfinite: Non-finite rewards dropped over all curves (``nan_policy="omit"``).

    Example:
        >>> est = StiffnessEstimate(stiffness=0.5, stiffness_current=None,
        ...     stiffness_sampler=None, std_error=0.01, std_error_current=None,
        ...     std_error_sampler=None, plateau=0.85, rates=(0.025,), curve_stiffness=(0.5,),
        ...     learning_rates=(0.05,), linear=True, spread=0.0, optimizer="sgd",
        ...     method="tail", n_curves=1, message="")
        >>> round(est.rate(0.1, momentum=0.9), 6), est.has_split
        (0.5, False)
    """

    stiffness: float
    stiffness_current: float | None
    stiffness_sampler: float | None
    std_error: float
    std_error_current: float | None
    std_error_sampler: float | None
    plateau: float
    rates: tuple[float, ...]
    curve_stiffness: tuple[float, ...]
    learning_rates: tuple[float, ...]
    linear: bool
    spread: float
    optimizer: str
    method: str
    n_curves: int
    message: str
    n_dropped_nonfinite: int = 0

    @property
    def has_split(self) -> bool:
        """Whether K_c and K_o were measured."""
        return self.stiffness_current is not None

    def rate(self, learning_rate: float, *, momentum: float = 0.0) -> float:
        """Dimensionless rate x = eta*K/(1-mu) at another learning rate and heavy-ball mu."""
        eta = check_interval("learning_rate", learning_rate, low=0.0, low_closed=False)
        mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
        return eta * self.stiffness / (1 - mu)


# ---------------------------------------------------------------------------------------------
# Per-curve rates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rate:
    lam: float  # per-step rate of the slow mode
    se_lam: float
    eta_k: float  # eta * (K, or K_c for frozen curves), exact inversion for the curve's mu
    se_eta_k: float
    plateau: float
    method: str


def _eta_k_from_root(lam: float, mu: float) -> float:
    """eta*K from the slow root z = exp(-lambda): z^2 - (1 + mu - eta K) z + mu = 0."""
    z = math.exp(-lam)
    return (1 - z) * (1 - mu / z)


def _tail(t: FloatArray, y: FloatArray, mu: float) -> _Rate | None:
    """Exponential on the linear tail, or None when no window is long and clean enough."""
    gap = abs(y[-1] - y[0])
    dev = np.abs(y - y[-1])
    for frac in _TAIL_FRACTIONS:
        above = np.flatnonzero(dev > frac * gap)
        i0 = int(above[-1]) + 1 if above.size else 0
        i0 = max(i0 - 1, 0)  # keep the last point outside the window: it anchors the decay
        if y.size - i0 < _TAIL_MIN_POINTS:
            continue
        try:
            fit = fit_trajectory(y[i0:], steps=t[i0:] - t[i0], models=("exponential",))
        except (InsufficientDataError, FitError):
            continue
        amp = abs(fit.start - fit.plateau)
        if fit.converged and amp > 0 and fit.noise_std <= _CLEAN * amp and "bound" not in \
                fit.message:
            se = fit.std_errors["rate"]
            deriv = abs(_eta_k_from_root(fit.rate * (1 + 1e-6), mu) - _eta_k_from_root(
                fit.rate, mu)) / (fit.rate * 1e-6)
            return _Rate(fit.rate, se, _eta_k_from_root(fit.rate, mu), se * deriv, fit.plateau,
                         f"tail({frac:g})")
    return None


def _pinned(t: FloatArray, y: FloatArray, mu: float, plateau: float | None) -> _Rate:
    """Exact heavy-ball response from rest, p = P - (P - p0) Phi(t; eta K, mu), over the curve.

    The plateau P is pinned (or fitted when None); p0 is linear; eta K is searched on a log grid
    and refined with Brent's method. Its standard error comes from the Jacobian.
    """
    span = max(float(t.max()), 1.0)
    lo, hi = math.log(0.02 * (1 - mu) / span), math.log(1.9 * (1 + mu))

    def solve(u: float) -> tuple[float, FloatArray]:
        phi = _phi_heavy_ball(t, math.exp(u), mu)
        X = phi[:, None] if plateau is not None else np.stack([1 - phi, phi], axis=1)
        target = y - plateau if plateau is not None else y
        coef, *_ = np.linalg.lstsq(X, target, rcond=None)
        return float(np.sum((target - X @ coef) ** 2)), coef

    grid = np.linspace(lo, hi, 80)
    sse = np.array([solve(u)[0] for u in grid])
    i = int(np.nanargmin(sse))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = optimize.minimize_scalar(lambda u: solve(u)[0], bounds=(a, b), method="bounded",
                                   options={"xatol": 1e-8})
    u = float(res.x)
    sse_best, coef = solve(u)
    p_star = plateau if plateau is not None else float(coef[0])
    start = p_star + float(coef[0]) if plateau is not None else float(coef[1])
    # Jacobian of the model in (p0, [P], u) by central differences, for the standard error of u
    def model(p0: float, pp: float, uu: float) -> FloatArray:
        return pp - (pp - p0) * _phi_heavy_ball(t, math.exp(uu), mu)

    h = 1e-5
    cols = [(model(start + h, p_star, u) - model(start - h, p_star, u)) / (2 * h),
            (model(start, p_star, u + h) - model(start, p_star, u - h)) / (2 * h)]
    if plateau is None:
        cols.append((model(start, p_star + h, u) - model(start, p_star - h, u)) / (2 * h))
    J = np.stack(cols, axis=1)
    dof = max(y.size - J.shape[1], 1)
    resid = y - model(start, p_star, u)
    rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if resid.std() > 0 else 0.0
    inflate = (1 + rho) / (1 - rho) if 0 < rho < 1 else 1.0  # autocorrelated residuals
    try:
        cov = np.linalg.inv(J.T @ J) * sse_best / dof * inflate
        se_u = math.sqrt(max(cov[1, 1], 0.0))
    except np.linalg.LinAlgError:
        se_u = math.inf
    eta_k = math.exp(u)
    lam = float(relaxation_rate(eta_k / (1 - mu), mu))
    dlam = (float(relaxation_rate(eta_k * (1 + 1e-6) / (1 - mu), mu)) - lam) / 1e-6  # dlam/du
    return _Rate(lam, abs(dlam) * se_u, eta_k, eta_k * se_u, p_star,
                 "pinned" if plateau is not None else "free")


def _common_plateau(data: list[tuple[FloatArray, FloatArray]],
                    momenta: Sequence[float] | None = None) -> tuple[float, str]:
    """Median fitted plateau of the curves that saturate (or of the most saturated one).

    A curve run with heavy-ball momentum mu > 0 is fitted with the exact heavy-ball response
    at its known mu (an exponential misplaces the plateau of an underdamped curve: K was 2-3%
    low at mu = 0.9, 1% noise, 20 seeds), other curves with the exponential.
    """
    fits, efolds_list = [], []
    for (t, y), mu in zip(data, momenta or [0.0] * len(data), strict=True):
        models = ("heavy_ball",) if mu > 0 else ("exponential",)
        try:
            fit = fit_trajectory(y, steps=t, models=models, momentum=mu if mu > 0 else None)
        except (InsufficientDataError, FitError):
            continue  # (a curve that cannot be fitted does not vote; its span is skipped too)
        fits.append(fit)
        efolds_list.append(fit.rate * max(float(t.max()), 1.0))
    if not fits:
        raise FitError("No on-policy curve could be fitted to find the plateau; pass "
                       "`plateau=` explicitly.")
    efolds = np.array(efolds_list)
    sat = [f.plateau for f, e in zip(fits, efolds, strict=True) if e >= _SATURATED_EFOLDS]
    if sat:
        return float(np.median(sat)), (
            f"plateau pinned at the median of {len(sat)} saturated curves")
    best = fits[int(np.argmax(efolds))]
    warnings.warn(
        f"No pilot curve saturates (the best covers {efolds.max():.1f} e-folds, need "
        f"{_SATURATED_EFOLDS:g}); the pinned plateau {best.plateau:.3f} is an extrapolation and K "
        "is uncertain. Run one pilot longer or at a larger learning rate, or pass `plateau=`.",
        AdvisorWarning, stacklevel=3)
    return best.plateau, "plateau pinned at the most saturated curve (extrapolated)"


def _combine(values: list[float], errors: list[float]) -> tuple[float, float]:
    """Inverse-variance mean; error = max(fit-based, across-curve standard error)."""
    v, e = np.array(values), np.array(errors)
    if np.all(np.isfinite(e)) and np.all(e > 0):
        w = 1 / e**2
        mean, se_fit = float(np.sum(w * v) / np.sum(w)), float(np.sqrt(1 / np.sum(w)))
    else:
        mean, se_fit = float(np.mean(v)), float(np.max(e)) if e.size else math.inf
    se_between = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return mean, max(se_fit, se_between)


def _off_plateau(value: float, plateau: float, on: list[FloatArray]) -> bool:
    """Whether ``value`` is off ``plateau`` by more than the tolerance share of the rise."""
    rise = float(np.median([abs(plateau - y[0]) for y in on]))
    return abs(value - plateau) > _FROZEN_PLATEAU_TOLERANCE * rise


def _check_pinned_plateau(plateau: float, fitted: list[float], on: list[FloatArray]) -> None:
    """Warn when a given ``plateau`` was not used (clean tails) and contradicts their fits."""
    tail = float(np.median(fitted))
    if _off_plateau(plateau, tail, on):
        warnings.warn(
            f"`plateau`={plateau:g} was not used: every on-policy curve has a clean tail, whose "
            f"fits settle at {tail:.4g}, so K comes from the tails (StiffnessEstimate.plateau "
            "still reports the given value). Check the value, or pass method='pinned' to fit "
            "with it.", AdvisorWarning, stacklevel=3)


def _check_frozen_plateau(i: int, plateau: float, p_star: float, on: list[FloatArray]) -> None:
    """Warn when a frozen-sampler curve settles away from the on-policy plateau.

    K_c is the current-policy part of the Jacobian AT the fixed point, so the sampler must be
    frozen at the converged policy with the current policy perturbed from it
    (bandit-findings.md section 3). A sampler frozen elsewhere (e.g. at the start) relaxes to
    another plateau at another rate: K_c = 1.59 instead of 1.25 on the 2-arm reference.
    """
    if _off_plateau(plateau, p_star, on):
        warnings.warn(
            f"curves[{i}] (frozen sampler) settles at {plateau:.4g}, not at the on-policy "
            f"plateau {p_star:.4g}: its sampler was not frozen at the converged policy, so its "
            "rate is not eta*K_c at the fixed point and K_c, K_o are biased. Freeze the sampler "
            "at the end of an on-policy run and perturb the current policy from there.",
            AdvisorWarning, stacklevel=3)


def _sliding_current(lam: float, eta: float, mu: float, d: int, k: float) -> float:
    """K_c from the slow root of z^{d+1} - (1+mu-eta Kc) z^d + mu z^{d-1} + eta (K - Kc) = 0."""
    z = math.exp(-lam)
    num = z ** (d + 1) - (1 + mu) * z**d + mu * z ** (d - 1) + eta * k
    return num / (eta * (1 - z**d))


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------
def estimate_stiffness(
    curves: PilotCurve | Sequence[PilotCurve],
    *,
    plateau: float | None = None,
    nan_policy: Literal["raise", "omit"] = "raise",
    method: Literal["auto", "tail", "pinned"] = "auto",
) -> StiffnessEstimate:
    """Estimate K (and K_c, K_o when frozen or sliding-lag curves are given) from pilot curves.

    Args:
        curves: One or more :class:`PilotCurve`; at least one on-policy (piecewise,
            ``refresh_interval=1``). All must use the same optimizer.
        plateau: Pin the on-policy plateau p* (else taken from the saturated curves).
        nan_policy: ``"raise"`` on non-finite rewards, or ``"omit"`` them.
        method: ``"tail"`` (clean curves only), ``"pinned"``, or ``"auto"``: the tail where a
            clean linear tail exists, else the pinned fit.

    Returns:
        A :class:`StiffnessEstimate`.

    Raises:
        InsufficientDataError: A curve has fewer than 8 finite points.
        FitError: ``method="tail"`` and a curve has no clean tail.

    Example:
        >>> from advisor.dynamics import trajectory
        >>> k = np.arange(400)
        >>> curves = [PilotCurve(rewards=trajectory(k, plateau=0.85, start=0.5, rate=eta * 0.5,
        ...                      model="heavy_ball"), learning_rate=eta) for eta in (0.05, 0.1)]
        >>> est = estimate_stiffness(curves)
        >>> round(est.stiffness, 4), est.method, est.linear
        (0.5, 'tail', True)
    """
    given = type(curves).__name__
    if isinstance(curves, PilotCurve):
        curves = [curves]
    elif isinstance(curves, (str, bytes, dict)) or not hasattr(curves, "__iter__"):
        curves = []
    curves = list(curves)
    if not curves and given in ("list", "tuple"):
        given = f"an empty {given}"
    if not curves or not all(isinstance(c, PilotCurve) for c in curves):
        raise TypeError("`curves` must be a PilotCurve or a non-empty sequence of them, got "
                        f"{given if not curves else 'a sequence with other items'}. Wrap each "
                        "reward curve: PilotCurve(rewards=..., learning_rate=...).")
    check_options("method", method, ("auto", "tail", "pinned"))
    if plateau is not None:
        plateau = check_interval("plateau", plateau)
    optimizers = {c.optimizer for c in curves}
    if len(optimizers) > 1:
        raise ValueError("`curves` must share one optimizer, got "
                         f"{sorted(optimizers)}: SGD and AdamW stiffness have different units.")
    data = []
    n_dropped = 0
    for i, c in enumerate(curves):
        y, kept = as_finite_1d(f"curves[{i}].rewards", c.rewards, nan_policy=nan_policy)
        n_dropped += int((~kept).sum())
        if y.size < _MIN_POINTS:
            raise InsufficientDataError(
                f"`curves[{i}].rewards` must have at least {_MIN_POINTS} finite points, got "
                f"{y.size}. Run the pilot longer.")
        data.append((np.flatnonzero(kept).astype(np.float64), y))
    on = [i for i, c in enumerate(curves) if c.is_on_policy]
    if not on:
        raise ValueError("`curves` must include an on-policy curve (refresh_scheme='piecewise', "
                         "refresh_interval=1): K is measured there.")
    notes: list[str] = []
    rates: dict[int, _Rate] = {}

    def rate_of(i: int, pin: float | None, free_plateau: bool) -> _Rate:
        t, y = data[i]
        mu = curves[i].momentum
        if method != "pinned":
            r = _tail(t, y, mu)
            if r is not None:
                return r
            if method == "tail":
                raise FitError(f"`curves[{i}]` has no clean linear tail (noisy or too short); "
                               "use method='pinned' or 'auto'.")
        return _pinned(t, y, mu, None if free_plateau else pin)

    tails = {i: _tail(*data[i], curves[i].momentum) for i in on} if method != "pinned" else {}
    pin = plateau
    if pin is None and any(tails.get(i) is None for i in on):
        pin, how = _common_plateau([data[i] for i in on], [curves[i].momentum for i in on])
        notes.append(how + f" ({pin:.4f}).")
    for i in on:
        rates[i] = tails[i] if tails.get(i) is not None else rate_of(i, pin, False)
    ks = [rates[i].eta_k / curves[i].learning_rate for i in on]
    per_curve = dict(zip(on, ks, strict=True))
    ses = [rates[i].se_eta_k / curves[i].learning_rate for i in on]
    k_mean, k_se = _combine(ks, ses)
    p_star = pin if pin is not None else float(np.median([rates[i].plateau for i in on]))
    if plateau is not None and all(rates[i].method.startswith("tail") for i in on):
        _check_pinned_plateau(plateau, [rates[i].plateau for i in on],
                              [data[i][1] for i in on])

    # the split: frozen curves relax at eta*K_c; sliding-lag curves through their root
    kc_vals, kc_ses = [], []
    for i, c in enumerate(curves):
        if i in rates:
            continue
        if not (c.is_frozen or c.refresh_scheme == "sliding"):
            notes.append(f"curves[{i}] (piecewise, K_ref={c.refresh_interval}) not used: only "
                         "on-policy, frozen and sliding-lag curves have a closed-form rate.")
            continue
        r = rates[i] = rate_of(i, None, True)
        if c.is_frozen:
            kc, se = r.eta_k / c.learning_rate, r.se_eta_k / c.learning_rate
            _check_frozen_plateau(i, r.plateau, p_star, [data[j][1] for j in on])
        else:
            args = (c.learning_rate, c.momentum, c.refresh_interval, k_mean)
            kc = _sliding_current(r.lam, *args)
            slope = (_sliding_current(r.lam * (1 + 1e-6), *args) - kc) / (r.lam * 1e-6)
            se = abs(slope) * r.se_lam
        per_curve[i] = kc
        kc_vals.append(kc)
        kc_ses.append(se)
    kc = kc_se = ko = ko_se = None
    if kc_vals:
        kc, kc_se = _combine(kc_vals, kc_ses)
        ko, ko_se = k_mean - kc, math.hypot(k_se, kc_se)

    by_lr: dict[float, list[float]] = {}
    for i, k in zip(on, ks, strict=True):
        by_lr.setdefault(curves[i].learning_rate, []).append(k)
    meds = [float(np.median(v)) for v in by_lr.values()]
    spread = (max(meds) - min(meds)) / abs(float(np.median(meds))) if len(meds) > 1 else 0.0
    linear = spread <= _LINEARITY_SPREAD
    if not linear:
        warnings.warn(
            f"K per unit learning rate varies by {spread:.0%} across learning rates "
            f"({', '.join(f'{lr:g}: {m:.3g}' for lr, m in zip(by_lr, meds, strict=True))}): "
            "the response is "
            "not linear there, so K extrapolates poorly; use pilots at smaller learning rates.",
            AdvisorWarning, stacklevel=2)
    used = sorted(rates)
    kinds = {rates[i].method.split("(")[0] for i in used}
    how = "tail" if kinds == {"tail"} else ("tail+pinned" if "tail" in kinds else "pinned")
    return StiffnessEstimate(
        stiffness=k_mean, stiffness_current=kc, stiffness_sampler=ko, std_error=k_se,
        std_error_current=kc_se, std_error_sampler=ko_se, plateau=float(p_star),
        rates=tuple(rates[i].lam if i in rates else math.nan for i in range(len(curves))),
        curve_stiffness=tuple(per_curve.get(i, math.nan) for i in range(len(curves))),
        learning_rates=tuple(c.learning_rate for c in curves), linear=linear, spread=spread,
        optimizer=curves[0].optimizer, method=how, n_curves=len(used),
        message=" ".join([f"K from {len(on)} on-policy curve(s) by {how}."] + notes),
        n_dropped_nonfinite=n_dropped)

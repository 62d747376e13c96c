from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from advisor import _trajectory_models as _models
from advisor import dynamics
from advisor.dynamics import Regime
from advisor.dynamics import damping_ratio
from advisor.dynamics import fit_trajectory
from advisor.dynamics import natural_frequency
from advisor.dynamics import regime
from advisor.dynamics import relaxation_rate
from advisor.dynamics import time_constant
from advisor.dynamics import trajectory
from advisor.exceptions import FitError
from advisor.exceptions import InsufficientDataError


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _recurrence(eta_k: float, mu: float, n: int) -> np.ndarray:
    """Step-by-step heavy-ball map from rest, e_0 = 1 (the oracle)."""
    e = [1.0, 1.0]  # e_{-1} = e_0
    for _ in range(n - 1):
        e.append((1 + mu - eta_k) * e[-1] - mu * e[-2])
    return np.array(e[1:])


# ---------------------------------------------------------------------------------------------
# known values
# ---------------------------------------------------------------------------------------------
def test_regime_values() -> None:
    assert [r.value for r in Regime] == ["monotone", "overshoot", "oscillatory", "divergent"]
    assert Regime("divergent") is Regime.DIVERGENT


def test_continuous_damping_ratio_and_frequency() -> None:
    # zeta = (1 - mu) / (2 sqrt(eta K)) with eta K = x (1 - mu) = 0.002
    assert damping_ratio(0.02, 0.9) == pytest.approx(0.1 / (2 * math.sqrt(0.002)))
    assert natural_frequency(0.02, 0.9) == pytest.approx(math.sqrt(0.002))
    np.testing.assert_allclose(damping_ratio([0.02, 0.08], 0.9), [1.118034, 0.559017], rtol=1e-6)


@pytest.mark.parametrize("mu", [0.5, 0.8, 0.9])
def test_overshoot_onset_at_discrete_critical_damping(mu: float) -> None:
    critical = (1 - math.sqrt(mu)) ** 2 / (1 - mu)  # eta K = (1 - sqrt mu)^2, as a rate x
    assert regime(critical * (1 - 1e-6), mu) is Regime.MONOTONE
    assert regime(critical * (1 + 1e-3), mu) is Regime.OVERSHOOT
    assert damping_ratio(critical * (1 - 1e-6), mu, exact=True) == 1.0
    assert damping_ratio(critical * 1.5, mu, exact=True) < 1.0


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_divergence_at_two_one_plus_mu(mu: float) -> None:
    edge = 2 * (1 + mu) / (1 - mu)  # eta K = 2 (1 + mu)
    assert regime(edge * (1 - 1e-6), mu) is not Regime.DIVERGENT
    assert regime(edge, mu) is Regime.DIVERGENT
    assert regime(0.0, mu) is Regime.DIVERGENT  # no restoring force: never relaxes


def test_regime_is_vectorised() -> None:
    out = regime(np.array([0.01, 0.5, 40.0]), 0.9)  # eta K = 0.001, 0.05, 4 > 3.8
    assert out.tolist() == [Regime.MONOTONE, Regime.OSCILLATORY, Regime.DIVERGENT]
    # plain gradient descent alternates sign once eta K > 1
    assert regime(1.2, 0.0) is not Regime.MONOTONE


def test_relaxation_rate_limits() -> None:
    # mu = 0: e_k = (1 - x)^k exactly
    assert relaxation_rate(0.1) == pytest.approx(-math.log(0.9))
    # strongly overdamped heavy ball: the slow root tends to x (zeta = 16 here, error ~ 1/zeta^2)
    assert relaxation_rate(1e-4, 0.9) == pytest.approx(1e-4, rel=5e-3)
    assert time_constant(0.1) == pytest.approx(-1 / math.log(0.9))
    assert time_constant(5.0, 0.0) == math.inf  # |1 - 5| > 1: not decaying


# ---------------------------------------------------------------------------------------------
# oracle: closed forms against step-by-step simulation / numerical ODE
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("eta_k_factor", [0.01, 0.3, 1.0, 1.7, 4.0, 0.999 * 2])
def test_heavy_ball_closed_form_matches_recurrence(mu: float, eta_k_factor: float) -> None:
    # factors relative to the critical damping (1 - sqrt mu)^2 (1.0 = double root) and up to
    # the divergence edge; 1e-10 covers float rounding over 400 steps
    eta_k = min(eta_k_factor * max((1 - math.sqrt(mu)) ** 2, 0.3), 2 * (1 + mu) * 0.999)
    k = np.arange(400)
    closed = trajectory(k, plateau=1.0, start=0.0, rate=eta_k / (1 - mu), momentum=mu,
                        model="heavy_ball")
    np.testing.assert_allclose(1.0 - closed, _recurrence(eta_k, mu, 400), atol=1e-10)


@pytest.mark.parametrize("zeta", [0.3, 1.0, 1.0 + 1e-9, 2.5, 30.0])
def test_oscillator_closed_form_matches_ode(zeta: float) -> None:
    omega0 = 0.1
    t = np.linspace(0, 200, 201)
    sol = solve_ivp(lambda _, s: [s[1], -2 * zeta * omega0 * s[1] - omega0**2 * s[0]],
                    (0, 200), [1.0, 0.0], t_eval=t, rtol=1e-10, atol=1e-12)
    phi = dynamics._phi_oscillator(t, np.float64(omega0), np.float64(zeta))
    np.testing.assert_allclose(phi, sol.y[0], atol=1e-7)


def test_continuous_oscillator_approximates_heavy_ball() -> None:
    # paper-math.md 1.3: discrete map and ODE from rest agree within 0.6-1.5% of the step
    k = np.arange(600)
    kw = dict(plateau=1.0, start=0.0, rate=0.02, momentum=0.9)
    gap = trajectory(k, model="heavy_ball", **kw) - trajectory(k, model="oscillator", **kw)
    assert np.max(np.abs(gap)) < 0.02


def test_single_exponential_limit_and_two_timescale() -> None:
    k = np.arange(0, 3000, 7)
    kw = dict(plateau=0.9, start=0.4, rate=5e-4, momentum=0.9)  # zeta = 7: overdamped
    exact = trajectory(k, model="heavy_ball", **kw)
    limit = trajectory(k, plateau=0.9, start=0.4, rate=relaxation_rate(5e-4, 0.9))
    assert np.max(np.abs(exact - limit)) < 0.01 * 0.5  # 1% of the rise
    two = trajectory([0, 10], plateau=1.0, start=0.0, rate=0.01, rate2=0.5, weight=0.3,
                     model="two_timescale")
    np.testing.assert_allclose(two, [0.0, 1 - 0.3 * math.exp(-0.1) - 0.7 * math.exp(-5)])


# ---------------------------------------------------------------------------------------------
# parameter recovery
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exponential_recovery(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(150)
    y = trajectory(t, plateau=0.85, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    fit = fit_trajectory(y, models=("exponential",))
    # sd 0.03 over ~100 saturated points: plateau SE ~ 0.004; 0.015 is > 3 SE
    assert fit.plateau == pytest.approx(0.85, abs=0.015), "plateau"
    assert fit.rate == pytest.approx(0.04, rel=0.2), "rate"
    assert abs(fit.plateau - 0.85) < 4 * fit.std_errors["plateau"] + 1e-3
    assert abs(fit.rate - 0.04) < 4 * fit.std_errors["rate"]
    assert fit.regime is Regime.MONOTONE and fit.damping_ratio == math.inf
    assert fit.time_constant == pytest.approx(1 / fit.rate)


def test_oscillator_recovery_from_heavy_ball() -> None:
    rng = np.random.default_rng(0)
    k = np.arange(400)
    x, mu = 0.015, 0.9  # zeta = sqrt(0.1)/(2 sqrt(0.015)) = 1.29, omega0 = sqrt(0.0015)
    y = trajectory(k, plateau=0.8, start=0.3, rate=x, momentum=mu, model="heavy_ball")
    fit = fit_trajectory(y + rng.normal(0, 0.005, k.size))
    assert fit.model == "oscillator"
    # the continuous model reads the discrete map with ~7% bias in zeta (tests above), so 15%
    assert fit.damping_ratio == pytest.approx(damping_ratio(x, mu), rel=0.15), "damping_ratio"
    assert fit.natural_frequency == pytest.approx(natural_frequency(x, mu), rel=0.1), "omega0"
    assert fit.plateau == pytest.approx(0.8, abs=0.005), "plateau"


def test_underdamped_fit_reports_regime() -> None:
    k = np.arange(300)
    y = trajectory(k, plateau=0.8, start=0.3, rate=0.3, momentum=0.9, model="oscillator")
    fit = fit_trajectory(y, models=("oscillator",))
    assert fit.damping_ratio == pytest.approx(damping_ratio(0.3, 0.9), rel=1e-3)
    assert fit.regime is Regime.OSCILLATORY


def test_two_timescale_recovery() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(500)
    y = trajectory(t, plateau=0.9, start=0.2, rate=0.005, rate2=0.1, weight=0.4,
                   model="two_timescale") + rng.normal(0, 0.003, t.size)
    fit = fit_trajectory(y)
    assert fit.model == "two_timescale"
    assert fit.params["rate"] == pytest.approx(0.005, rel=0.1), "slow rate"
    assert fit.params["rate2"] == pytest.approx(0.1, rel=0.1), "fast rate"
    assert fit.params["weight"] == pytest.approx(0.4, abs=0.03), "weight"


# ---------------------------------------------------------------------------------------------
# heavy ball at a known momentum
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("eta_k_factor", [0.01, 0.3, 1.0, 1.7, 4.0])
def test_vectorised_heavy_ball_response_matches_recurrence(mu: float, eta_k_factor: float) -> None:
    # the fit's kernel, for several eta K at once, against the step-by-step map; the fit's
    # box stops at eta K = 1 + mu (non-negative or complex roots)
    eta_k = min(eta_k_factor * max((1 - math.sqrt(mu)) ** 2, 0.3), 1 + mu)
    k = np.arange(400.0)
    phi = _models.phi_heavy_ball(k, np.array([[eta_k], [eta_k / 3]]), mu)
    np.testing.assert_allclose(phi[0], _recurrence(eta_k, mu, 400), atol=1e-10)
    np.testing.assert_allclose(phi[1], _recurrence(eta_k / 3, mu, 400), atol=1e-10)


@pytest.mark.parametrize(("eta_k", "mu"), [(0.002, 0.9), (0.0026, 0.9), (0.5, 0.9), (1.5, 0.9),
                                          (0.3, 0.0), (1.2, 0.0), (0.1, 0.5)])
def test_fit_slow_rate_matches_relaxation_rate(eta_k: float, mu: float) -> None:
    # the fit's reported rate against the public exact discrete slow root (oracle)
    assert _models.slow_rate(eta_k, mu) == pytest.approx(relaxation_rate(eta_k / (1 - mu), mu),
                                                         rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heavy_ball_recovery_at_known_momentum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = np.arange(300)
    x, mu = 0.02, 0.9  # eta K = 0.002, zeta = 0.1 / (2 sqrt(0.002)) = 1.118: slow S-start
    y = trajectory(k, plateau=0.8, start=0.3, rate=x, momentum=mu, model="heavy_ball")
    fit = fit_trajectory(y + rng.normal(0, 0.02, k.size), models=("heavy_ball",), momentum=mu)
    # sd 0.02 over 300 points: SE(x) ~ 1.6%, SE(plateau) ~ 0.0017; tolerances ~5 SE
    assert fit.params["dimensionless_rate"] == pytest.approx(x, rel=0.08), "dimensionless_rate"
    assert fit.plateau == pytest.approx(0.8, abs=0.01), "plateau"
    assert fit.damping_ratio == pytest.approx(damping_ratio(x, mu), rel=0.05), "damping_ratio"
    assert fit.rate == pytest.approx(relaxation_rate(fit.params["dimensionless_rate"], mu))
    assert fit.natural_frequency == pytest.approx(math.sqrt(fit.params["dimensionless_rate"]
                                                            * (1 - mu)))
    assert abs(fit.params["dimensionless_rate"] - x) < 5 * fit.std_errors["dimensionless_rate"]
    assert fit.params["momentum"] == mu and fit.std_errors["momentum"] == 0.0
    assert fit.momentum == mu and fit.regime is Regime.MONOTONE


def test_heavy_ball_joins_the_default_candidates() -> None:
    rng = np.random.default_rng(0)
    k = np.arange(300)
    y = trajectory(k, plateau=0.8, start=0.3, rate=0.02, momentum=0.9, model="heavy_ball")
    y = y + rng.normal(0, 0.02, k.size)
    fit = fit_trajectory(y, momentum=0.9)
    assert set(fit.candidates) >= {"exponential", "oscillator", "heavy_ball"}
    assert fit.model == "heavy_ball"  # the true model, with fewer parameters than the oscillator
    assert "heavy_ball" not in fit_trajectory(y).candidates
    assert "heavy_ball" not in fit_trajectory(y, momentum=0.0).candidates  # = the exponential


def test_heavy_ball_at_zero_momentum_is_the_exponential() -> None:
    # oracle: with mu = 0 the map is e_k = (1 - eta K)^k, the exponential with
    # rate -ln(1 - eta K): both fits reach the same least-squares optimum
    rng = np.random.default_rng(3)
    t = np.arange(120)
    y = trajectory(t, plateau=0.85, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    hb = fit_trajectory(y, models=("heavy_ball",), momentum=0.0)
    ex = fit_trajectory(y, models=("exponential",))
    assert hb.model == "heavy_ball"
    assert hb.plateau == pytest.approx(ex.plateau, abs=1e-6)
    assert hb.start == pytest.approx(ex.start, abs=1e-6)
    assert hb.rate == pytest.approx(ex.rate, rel=1e-5)
    assert hb.r_squared == pytest.approx(ex.r_squared, abs=1e-10)
    assert hb.aicc == pytest.approx(ex.aicc, abs=1e-6)
    np.testing.assert_allclose(hb.predict([60, 300])[0], ex.predict([60, 300])[0], atol=1e-6)


def test_underdamped_heavy_ball_fit_reports_exact_regime() -> None:
    k = np.arange(300)
    y = trajectory(k, plateau=0.8, start=0.3, rate=0.5, momentum=0.9, model="heavy_ball")
    fit = fit_trajectory(y, models=("heavy_ball",), momentum=0.9)
    assert fit.params["dimensionless_rate"] == pytest.approx(0.5, rel=1e-6)
    assert fit.regime is regime(0.5, 0.9) is Regime.OSCILLATORY
    # between integer steps the response is the analytic continuation of the same roots
    mean = fit.predict([10, 10.5, 11])[0]
    assert np.all(np.isfinite(mean)) and min(mean[0], mean[2]) < mean[1] < max(mean[0], mean[2])


def test_heavy_ball_band_covers_a_slow_start() -> None:
    rng = np.random.default_rng(0)
    k = np.arange(300)
    truth = trajectory(k, plateau=0.85, start=0.3, rate=0.02, momentum=0.9, model="heavy_ball")
    y = truth + rng.normal(0, 0.03, k.size)
    fit = fit_trajectory(y[:75], models=("heavy_ball",), momentum=0.9)
    mean, low, high = fit.predict([299])
    assert low[0] < truth[-1] < high[0]
    assert abs(mean[0] - truth[-1]) < 0.05


def test_select_breaks_near_ties_toward_fewer_parameters() -> None:
    def pick(aicc: dict[str, float]) -> str:
        sols = [SimpleNamespace(model=m) for m in aicc]
        return dynamics._select(sols, aicc).model  # type: ignore[arg-type]

    # within 0.5 AICc units the model with fewer parameters wins; same count: lower AICc
    assert pick({"exponential": -100.0, "oscillator": -100.4}) == "exponential"
    assert pick({"exponential": -100.0, "oscillator": -100.6}) == "oscillator"
    assert pick({"exponential": -99.0, "heavy_ball": -100.0, "oscillator": -100.3}) == "heavy_ball"
    assert pick({"oscillator": -100.0, "two_timescale": -100.45}) == "oscillator"
    assert pick({"exponential": -100.0, "two_timescale": -101.0}) == "two_timescale"


def test_pinned_plateau() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(60)
    y = trajectory(t, plateau=0.85, start=0.3, rate=0.02) + rng.normal(0, 0.02, t.size)
    fit = fit_trajectory(y, plateau=0.85, models=("exponential",))
    assert fit.plateau == 0.85 and fit.std_errors["plateau"] == 0.0
    assert fit.rate == pytest.approx(0.02, rel=0.15)


# ---------------------------------------------------------------------------------------------
# done-when numbers (loose versions of benchmarks/fit_quality.py)
# ---------------------------------------------------------------------------------------------
def test_fit_quality_on_simulated_curves() -> None:
    from fit_quality import evaluate
    from fit_quality import make_curve

    rng = np.random.default_rng(0)
    # 400 completions per step: binomial sd of the logged mean ~0.023
    exp_rows = [evaluate(make_curve(rng, "exp", 400), 0.25, "exp") for _ in range(25)]
    r2 = np.median([r["r2"] for r in exp_rows])
    ceiling = np.median([r["ceiling"] for r in exp_rows])
    assert r2 >= 0.93 and r2 >= ceiling - 0.01  # noise-limited: R^2 reaches its ceiling
    assert np.median([r["r2_truth"] for r in exp_rows]) >= 0.99  # the fit tracks the mean
    assert np.median([r["plateau_err"] for r in exp_rows]) <= 0.01
    assert np.median([r["pred_err"] for r in exp_rows]) <= 0.05
    assert np.mean([r["cover"] for r in exp_rows]) >= 0.8
    curves = [make_curve(rng, "hb0.9", 400) for _ in range(16)]
    hb_rows = [evaluate(c, 0.25, "default") for c in curves]
    # the slow inertial start: AICc prefers a non-exponential model, by a clear margin
    assert np.mean([r["non_exp"] for r in hb_rows]) >= 0.8
    assert np.median([r["d_aicc"] for r in hb_rows]) > 4
    # the band stays honest on these harder prefixes (benchmark: 0.9+; 12 of 16 allows noise)
    assert np.mean([r["cover"] for r in hb_rows]) >= 0.75
    # the known momentum (what the pruner fits): benchmark median 0.04 at 400 samples
    known = [evaluate(c, 0.25, "pruner") for c in curves]
    assert np.median([r["pred_err"] for r in known]) <= 0.06
    assert np.median([r["pred_err"] for r in known]) < np.median([r["pred_err"] for r in hb_rows])
    assert np.mean([r["cover"] for r in known]) >= 0.75


def test_fit_quality_benchmark_runs() -> None:
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "benchmarks/fit_quality.py", "--n-curves", "2", "--samples", "400",
           "--n-timing", "1"]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert "Targets, `pruner` setting" in out.stdout
    assert "hb0.9    400  " in out.stdout and "R2truth" in out.stdout


def test_predict_interval() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(50)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.05) + rng.normal(0, 0.03, t.size)
    fit = fit_trajectory(y)
    mean, low, high = fit.predict([49, 100, 200])
    assert mean.shape == low.shape == high.shape == (3,)
    assert np.all(low < mean) and np.all(mean < high)
    narrow = fit.predict([200], interval=0.5)
    assert high[2] - low[2] > narrow[2][0] - narrow[1][0]
    # the band of a logged value is at least the residual noise wide (90%: +-1.64 sd)
    assert high[0] - low[0] > 2 * 1.5 * fit.noise_std
    np.testing.assert_array_equal(fit.predict([100])[1], fit.predict([100])[1])  # seeded


def test_exponential_fit_is_fast() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(100)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    fit_trajectory(y, models=("exponential",))
    start = time.perf_counter()
    for _ in range(10):
        fit_trajectory(y, models=("exponential",))
    assert (time.perf_counter() - start) / 10 < 0.03  # a few ms; loose for a shared CPU


# ---------------------------------------------------------------------------------------------
# NaN policy and bad input
# ---------------------------------------------------------------------------------------------
def test_nan_policy() -> None:
    t = np.arange(30)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.1)
    y[[3, 10]] = np.nan
    with pytest.raises(ValueError, match="must be finite, got .*nan.* at index 3"):
        fit_trajectory(y)
    fit = fit_trajectory(y, nan_policy="omit", models=("exponential",))
    assert fit.n_dropped_nonfinite == 2 and fit.n_points == 28
    assert fit.rate == pytest.approx(0.1, rel=1e-6)  # dropped points keep their steps


def test_too_short_and_constant() -> None:
    with pytest.raises(InsufficientDataError, match="at least 5 finite points"):
        fit_trajectory([0.1, 0.2, 0.3, 0.35])
    with pytest.raises(InsufficientDataError, match="at least 4 finite points"):
        fit_trajectory([0.1, 0.2, 0.3], plateau=0.5)
    with pytest.raises(InsufficientDataError, match="constant curve"):
        fit_trajectory([0.5] * 20)
    fit = fit_trajectory(trajectory(np.arange(5), plateau=0.8, start=0.3, rate=0.3))
    assert fit.model == "exponential" and "Skipped" in fit.message


def test_fit_error_carries_partial(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dynamics.optimize.least_squares

    def never_converges(*args: object, **kwargs: object) -> object:
        res = real(*args, **kwargs)
        res.status = 0  # "maximum number of function evaluations exceeded"
        return res

    monkeypatch.setattr(dynamics.optimize, "least_squares", never_converges)
    y = trajectory(np.arange(30), plateau=0.8, start=0.3, rate=0.1)
    with pytest.raises(FitError, match="No trajectory model converged") as info:
        fit_trajectory(y, models=("exponential",))
    assert info.value.partial is not None and not info.value.partial.converged
    assert info.value.partial.plateau == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"models": ("spline",)}, ValueError, "`models` must be one of"),
        ({"models": ()}, ValueError, "`models` must name at least one"),
        ({"steps": [0, 1, 1, 2, 3, 4, 5, 6]}, ValueError, "strictly increasing"),
        ({"steps": [0, 1, 2]}, ValueError, "must have the shape of `rewards`"),
        ({"plateau": float("nan")}, ValueError, "`plateau` must be a finite number"),
        ({"nan_policy": "drop"}, ValueError, "`nan_policy` must be one of"),
        ({"momentum": 1.0}, ValueError, r"`momentum` must be a finite number in \[0, 1\)"),
        ({"momentum": -0.1}, ValueError, r"`momentum` must be a finite number in \[0, 1\)"),
        ({"momentum": float("nan")}, ValueError, r"`momentum` must be a finite number"),
        ({"momentum": "0.9"}, TypeError, "`momentum` must be a real number, got str"),
        ({"momentum": True}, TypeError, "`momentum` must be a real number, got bool"),
        ({"models": ("heavy_ball",)}, ValueError, "`momentum` must be given with model"),
        ({"models": "exponential"}, ValueError, "`models` must name at least one"),
    ],
)
def test_fit_bad_input(kwargs: dict, error: type, match: str) -> None:
    y = trajectory(np.arange(8), plateau=0.8, start=0.3, rate=0.2)
    with pytest.raises(error, match=match):
        fit_trajectory(y, **kwargs)


def test_fit_rejects_non_numeric() -> None:
    with pytest.raises(TypeError, match="`rewards` must be a sequence of numbers"):
        fit_trajectory("0.1 0.2")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 0.0}, "`rate` must be a finite number in \\(0, inf\\]"),
        ({"momentum": 1.0}, "`momentum` must be a finite number in \\[0, 1\\)"),
        ({"model": "heavy_ball", "steps": [0.5, 1.0]}, "must be integers"),
        ({"model": "two_timescale"}, "`rate2` and `weight` must be given"),
        ({"model": "logistic"}, "`model` must be one of"),
        ({"steps": [-1, 0]}, r"`steps` must be a finite number in \[0, inf\], got -1.0 at "
                             r"index 0"),
    ],
)
def test_trajectory_bad_input(kwargs: dict, match: str) -> None:
    args = {"steps": [0, 1, 2], "plateau": 0.9, "start": 0.1, "rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        trajectory(**args)


def test_physics_bad_input() -> None:
    with pytest.raises(ValueError, match=r"`rate` must be a finite number in \[0, inf\], "
                                         r"got -0.1"):
        damping_ratio(-0.1)
    with pytest.raises(ValueError, match="`momentum` must be a finite number in \\[0, 1\\)"):
        regime(0.1, 1.0)
    fit = fit_trajectory(trajectory(np.arange(20), plateau=0.8, start=0.3, rate=0.2))
    with pytest.raises(ValueError, match="`interval` must be a finite number in \\(0, 1\\)"):
        fit.predict([30], interval=1.0)


# ------------------------------------------------------------- user-acceptance regressions
@pytest.mark.parametrize(("value", "error", "match"), [
    (True, TypeError, "`rate` must be a real number or an array of them, got booleans"),
    ("0.1", TypeError, "`rate` must be a real number or an array of them, got str"),
    (None, TypeError, "`rate` must be a real number or an array of them, got NoneType"),
    ([0.1, float("nan")], ValueError, r"`rate` must be a finite number in \[0, inf\], got nan "
                                      r"at index 1"),
])
def test_physics_rejects_non_numbers(value, error, match) -> None:
    # before: True was read as 1.0, "0.1" as 0.1 and None gave "must be finite, got None"
    for f in (damping_ratio, natural_frequency, relaxation_rate, time_constant, regime):
        with pytest.raises(error, match=match):
            f(value, 0.5)
    with pytest.raises(TypeError, match="`momentum` must be a real number"):
        damping_ratio(0.1, "0.5")


def test_physics_broadcast_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="`rate` and `momentum` must broadcast"):
        damping_ratio([0.1, 0.2], [0.0, 0.5, 0.9])


def test_physics_accept_numpy_and_pandas_inputs() -> None:
    pd = pytest.importorskip("pandas")
    x = np.array([0.01, 0.02])
    ref = damping_ratio(x, 0.5)
    for v in (pd.Series(x), list(x), tuple(x), x.astype(np.float32).astype(float)):
        np.testing.assert_allclose(damping_ratio(v, np.float32(0.5)), ref, rtol=1e-7)
    assert isinstance(damping_ratio(np.array(0.02), np.array(0.5)), float)
    assert damping_ratio(x[:, None], np.array([0.0, 0.9])).shape == (2, 2)


def test_regime_deadbeat_is_monotone() -> None:
    # x = 1, mu = 0: e_1 = 0 exactly, the curve reaches the plateau in one step (no crossing);
    # the double root z = 0 was called an overshoot
    assert regime(1.0, 0.0) is Regime.MONOTONE
    y = trajectory(np.arange(6), plateau=0.9, start=0.5, rate=1.0, model="heavy_ball")
    assert np.all(np.diff(y) >= 0) and y[1] == pytest.approx(0.9)
    assert regime(1.01, 0.0) is Regime.OVERSHOOT


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"plateau": float("nan")}, ValueError, "`plateau` must be a finite number"),
    ({"start": None}, TypeError, "`start` must be a real number"),
    ({"plateau": np.array([0.9, 0.8])}, TypeError, "`plateau` must be a real number"),
    ({"rate2": 0.01}, ValueError, "`rate2` and `weight` must be None for model='exponential'"),
    ({"steps": "3"}, TypeError, "`steps` must be a real number or an array"),
    ({"steps": [True, False]}, TypeError, "`steps` must be .* got booleans"),
])
def test_trajectory_rejects_bad_parameters(kwargs, error, match) -> None:
    # before: plateau=nan returned NaNs, start=None a bare float() error, rate2 was ignored
    args = {"steps": [0, 1, 2], "plateau": 0.9, "start": 0.1, "rate": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        trajectory(**args)


def test_trajectory_accepts_0d_parameters() -> None:
    y = trajectory([0, 5], plateau=np.array(0.9), start=np.float32(0.5), rate=np.array(0.1))
    np.testing.assert_allclose(y, [0.5, 0.9 - 0.4 * math.exp(-0.5)], rtol=1e-7)


def test_fit_accepts_0d_arguments_and_rejects_booleans() -> None:
    y = trajectory(np.arange(40), plateau=0.8, start=0.4, rate=0.1)
    fit = fit_trajectory(y, plateau=np.array(0.8), momentum=np.array(0.0),
                         models=("exponential",))
    assert fit.rate == pytest.approx(0.1, rel=1e-9)
    with pytest.raises(TypeError, match="`rewards` must be a sequence of numbers, got booleans"):
        fit_trajectory(np.arange(20) % 2 == 0)
    with pytest.raises(TypeError, match="`rewards` must be a sequence of numbers, got strings"):
        fit_trajectory([str(v) for v in y])


@pytest.mark.parametrize("scale", [1e-4, 1e-6, 1e-9])
def test_fit_is_scale_invariant(scale: float) -> None:
    # before: least_squares' absolute gradient tolerance stopped the refinement at the grid
    # point for curves of scale <= 1e-5 (noise-free exponential: rate 0.0714 instead of 0.07)
    t = np.arange(60)
    y = trajectory(t, plateau=0.8, start=0.4, rate=0.07)
    noise = 0.01 * np.random.default_rng(0).standard_normal(60)
    for models in (("exponential",), ("oscillator",)):
        ref, small = fit_trajectory(y, models=models), fit_trajectory(scale * y, models=models)
        assert small.rate == pytest.approx(ref.rate, rel=1e-6)
        assert small.plateau == pytest.approx(scale * ref.plateau, rel=1e-9)
    hb = fit_trajectory(scale * (y + noise), models=("heavy_ball",), momentum=0.5)
    hb_ref = fit_trajectory(y + noise, models=("heavy_ball",), momentum=0.5)
    assert hb.params["dimensionless_rate"] == pytest.approx(
        hb_ref.params["dimensionless_rate"], rel=1e-6)
    assert hb.std_errors["plateau"] == pytest.approx(scale * hb_ref.std_errors["plateau"],
                                                     rel=1e-4)
    assert hb.std_errors["rate"] == pytest.approx(hb_ref.std_errors["rate"], rel=1e-4)
    mean, low, high = hb.predict([200])
    mean_r, low_r, high_r = hb_ref.predict([200])
    np.testing.assert_allclose([mean[0], low[0], high[0]],
                               scale * np.array([mean_r[0], low_r[0], high_r[0]]), rtol=1e-5)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_noise_free_exponential_selects_the_exponential(direction: float) -> None:
    # before: every model fitted a noise-free curve to rounding error and AICc ranked the
    # rounding noise: a decreasing exponential came back as two_timescale with rate 0.05
    # (its zero-weight mode) instead of 0.1
    y = 0.5 + direction * 0.3 * (1 - np.exp(-0.1 * np.arange(40)))
    fit = fit_trajectory(y)
    assert fit.model == "exponential"
    assert fit.rate == pytest.approx(0.1, rel=1e-9)


def test_long_curve_fit_and_band_stay_bounded_in_memory() -> None:
    # before: predict() built (nodes, points, 2) arrays at once: 2000 x 200k x 2 doubles
    # (> 6 GB) and the process was killed; blocks are now bounded (same numbers: they are
    # computed node by node). Patched block size so that a short curve takes many blocks.
    from advisor import _trajectory_fit

    t = np.arange(400)
    y = trajectory(t, plateau=0.8, start=0.4, rate=0.02)
    y = y + 0.01 * np.random.default_rng(3).standard_normal(t.size)
    fit = fit_trajectory(y)
    ref = fit.predict([100, 800])
    old = _trajectory_fit._BLOCK_ELEMENTS
    try:
        _trajectory_fit._BLOCK_ELEMENTS = 1000  # a few nodes per block
        chunked = fit_trajectory(y)
        assert chunked.params == fit.params and chunked.candidates == fit.candidates
        for a, b in zip(chunked.predict([100, 800]), ref, strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        _trajectory_fit._BLOCK_ELEMENTS = old


@pytest.mark.parametrize(("steps", "kwargs", "error", "match"), [
    ([-5], {}, ValueError, r"`steps` must be a finite number in \[0, inf\], got -5.0 at index 0"),
    ([float("nan")], {}, ValueError, "`steps` must be a finite number"),
    ("100", {}, TypeError, "`steps` must be a real number or an array of them, got str"),
    (None, {}, TypeError, "`steps` must be a real number .* got NoneType"),
    ([100], {"n_samples": 0}, ValueError, "`n_samples` must be an integer >= 1"),
    ([100], {"n_samples": "10"}, TypeError, "`n_samples` must be an integer"),
])
def test_predict_rejects_bad_steps(steps, kwargs, error, match) -> None:
    # before: -5 gave an upper bound of 2e96 with overflow warnings, NaN and None gave
    # (nan, inf, -inf) silently, "100" was read as 100, n_samples="10" a bare TypeError
    y = trajectory(np.arange(40), plateau=0.8, start=0.4, rate=0.1)
    y = y + 0.01 * np.random.default_rng(0).standard_normal(40)
    fit = fit_trajectory(y, models=("exponential",))
    with pytest.raises(error, match=match):
        fit.predict(steps, **kwargs)

"""The stiffness-informed rate prior: `fit_trajectory(rate_prior=)` and
`TrajectoryPruner(stiffness=)`."""

from __future__ import annotations

import math
import re
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
from _posterior_oracle import exponential_posterior
from _posterior_oracle import weighted_median
from scipy import optimize
from scipy import special

from advisor import _trajectory_models as _models
from advisor.dynamics import fit_trajectory
from advisor.dynamics import relaxation_rate
from advisor.dynamics import trajectory
from advisor.exceptions import AdvisorWarning
from advisor.pruner import _MODEL_SCATTER
from advisor.pruner import TrajectoryPruner
from advisor.stiffness import StiffnessEstimate


optuna.logging.set_verbosity(optuna.logging.WARNING)
HB = {"models": ("heavy_ball",), "momentum": 0.9}
K300 = np.arange(300)


def slow_start_curves(seed: int, n: int) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Heavy-ball mu = 0.9 curves, damping 0.7-2 (slow start), Gaussian noise 0.05."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        zeta = rng.uniform(0.7, 2.0)
        x = 0.1 / (4 * zeta**2)  # dimensionless rate eta K / (1 - mu)
        truth = trajectory(K300, plateau=rng.uniform(0.6, 0.95), start=rng.uniform(0.1, 0.4),
                           rate=x, momentum=0.9, model="heavy_ball")
        out.append((x, truth, truth + rng.normal(0, 0.05, K300.size)))
    return out


# ---------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("prior", "error", "message"), [
    ((0.0, 0.2), ValueError, "`rate_prior[0]` must be a finite number in (0, inf], got 0.0."),
    ((-0.1, 0.2), ValueError, "`rate_prior[0]` must be a finite number in (0, inf], got -0.1"),
    ((math.inf, 0.2), ValueError, "`rate_prior[0]` must be a finite number in (0, inf]"),
    ((0.02, -0.1), ValueError, "`rate_prior[1]` must be a finite number in [0, inf], got -0.1"),
    ((0.02, math.nan), ValueError, "`rate_prior[1]` must be a finite number in [0, inf], got nan"),
    ((0.02, math.inf), ValueError, "`rate_prior[1]` must be a finite number in [0, inf]"),
    (("fast", 0.2), TypeError, "`rate_prior[0]` must be a real number, got str 'fast'."),
    ((0.02, True), TypeError, "`rate_prior[1]` must be a real number, got bool True."),
    (0.02, TypeError, "`rate_prior` must be a pair (centre, log_sd) of numbers, got float 0.02."),
    ("0.02", TypeError, "`rate_prior` must be a pair (centre, log_sd) of numbers, got str"),
    ({"centre": 0.02}, TypeError, "`rate_prior` must be a pair (centre, log_sd) of numbers"),
    ((0.02,), ValueError, "`rate_prior` must be a pair (centre, log_sd), got 1 values"),
    ((0.02, 0.1, 0.3), ValueError, "`rate_prior` must be a pair (centre, log_sd), got 3 values"),
])
def test_bad_rate_prior_is_rejected_with_a_clear_message(prior: Any, error: type,
                                                         message: str) -> None:
    y = trajectory(np.arange(30), plateau=0.9, start=0.3, rate=0.1)
    with pytest.raises(error, match=re.escape(message)):
        fit_trajectory(y, models=("exponential",), rate_prior=prior)


def test_rate_prior_needs_one_rate_models_and_a_relaxing_centre() -> None:
    y = trajectory(np.arange(30), plateau=0.9, start=0.3, rate=0.1)
    with pytest.raises(ValueError, match=re.escape(
            "`models` must be one-rate models ('exponential', 'heavy_ball') with `rate_prior`, "
            "got ('exponential', 'oscillator'). The prior is on the one rate of those models; "
            "drop 'oscillator'.")):
        fit_trajectory(y, models=("exponential", "oscillator"), rate_prior=(0.1, 0.2))
    with pytest.raises(ValueError, match=re.escape(
            "`rate_prior[0]` must be a dimensionless rate at which the map relaxes")):
        fit_trajectory(y, models=("exponential",), rate_prior=(3.0, 0.2))  # |1 - x| > 1
    # models=None with a prior: the one-rate models only (heavy_ball with a momentum)
    assert set(fit_trajectory(y, rate_prior=(0.1, 0.2)).candidates) == {"exponential"}
    fit = fit_trajectory(y, momentum=0.5, rate_prior=(0.1, 0.2))
    assert set(fit.candidates) == {"exponential", "heavy_ball"}
    assert fit.rate_prior == (0.1, 0.2)
    # numpy input is accepted; the least-squares fit itself does not depend on the prior
    plain = fit_trajectory(y, models=("exponential",))
    with_prior = fit_trajectory(y, models=("exponential",), rate_prior=np.array([0.05, 0.1]))
    assert with_prior.rate_prior == (0.05, 0.1)
    assert with_prior.rate == plain.rate and with_prior.plateau == plain.plateau


# ---------------------------------------------------------------------- the posterior's oracle
def test_posterior_with_prior_matches_a_brute_force_oracle() -> None:
    # as tests/test_trajectory_posterior.py: 25 points, 1 e-fold, exponential; the oracle
    # integrates Jeffreys x log-normal x likelihood on a dense (log rate, plateau, amplitude)
    # grid (sigma integrated out). The prior is centred 2x above the truth with log sd 0.3, so
    # it moves the answer well away from both least squares and the prior-free median.
    rng = np.random.default_rng(3)
    t = np.arange(25.0)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    centre, sd = 0.08, 0.3
    fit = fit_trajectory(y, models=("exponential",), rate_prior=(centre, sd))
    free = fit_trajectory(y, models=("exponential",))
    assert fit._inflate == 1.0
    horizon = 120.0
    median, low, high = (v[0] for v in fit.predict([horizon], n_samples=50))

    n = t.size
    lam = -math.log(1 - centre)  # the exponential's rate: relaxation_rate(x, 0) = -ln(1 - x)
    post = exponential_posterior(t, y, horizon,
                                 log_prior=lambda lr: -0.5 * ((lr - math.log(lam)) / sd) ** 2)
    oracle = weighted_median(post["values"], post["log_w"])
    rate, beta_hat, inv, sse_min = (post[k] for k in ("rate", "beta_hat", "inv", "sse_min"))
    assert abs(free.predict([horizon], n_samples=50)[0][0] - oracle) > 0.02  # discriminates
    assert median == pytest.approx(oracle, abs=1e-3)

    # the band: the predictive of a new point is Student-t for each rate (n - 2 dof, scale
    # s sqrt(1 + leverage)); mixed over the same dense rate grid with the oracle's weights
    # (Jeffreys x prior x SSE^-(n-2)/2 det(X^T X)^-1/2), its 5% and 95% quantiles by brentq
    xn = np.stack([np.ones_like(rate), np.exp(-rate * horizon)], axis=1)
    loc = np.einsum("gi,gi->g", xn, beta_hat)
    lev = np.einsum("gi,gij,gj->g", xn, inv, xn)
    scale = np.sqrt(sse_min / (n - 2) * (1 + lev))
    lw_rate = post["log_w_rate"]
    w = np.exp(lw_rate - lw_rate.max())
    w /= w.sum()
    def quantile(q: float) -> float:
        return optimize.brentq(lambda g: w @ special.stdtr(n - 2, (g - loc) / scale) - q,
                               -5.0, 5.0, xtol=1e-12)

    assert low == pytest.approx(quantile(0.05), abs=1e-3)
    assert high == pytest.approx(quantile(0.95), abs=1e-3)
    assert high - low < 0.8 * np.subtract(*free.predict([horizon], n_samples=500)[:0:-1])[0]


def test_known_rate_is_the_linear_fit_at_that_rate() -> None:
    # log sd 0: the rate is known, the prediction is ordinary least squares in (plateau,
    # start) at that rate, and the band is its exact Student-t prediction interval (its
    # variance times the fit's residual-autocorrelation inflation)
    rng = np.random.default_rng(8)
    x = 0.015
    truth = trajectory(K300, plateau=0.8, start=0.3, rate=x, momentum=0.9, model="heavy_ball")
    y = (truth + rng.normal(0, 0.04, K300.size))[:60]
    fit = fit_trajectory(y, **HB, rate_prior=(x, 0.0))
    mean, low, high = (v[0] for v in fit.predict([299], n_samples=50))
    phi = _models.phi_heavy_ball(np.arange(60.0), np.array([[x * 0.1]]), 0.9)[0]
    X = np.column_stack([np.ones(60), phi])
    beta, sse = np.linalg.lstsq(X, y, rcond=None)[:2]
    xn = np.array([1.0, _models.phi_heavy_ball(np.array([299.0]), np.array([[x * 0.1]]),
                                               0.9)[0, 0]])
    var = sse[0] / 58 * (1 + xn @ np.linalg.inv(X.T @ X) @ xn) * fit._inflate
    half = special.stdtrit(58, 0.95) * math.sqrt(var)
    assert mean == pytest.approx(xn @ beta, abs=1e-9)
    assert (low, high) == pytest.approx((xn @ beta - half, xn @ beta + half), abs=1e-9)
    assert abs(mean - truth[-1]) < 0.02


# ------------------------------------------------------------------------ parameter recovery
def test_prior_pulls_weakly_identified_prefixes_toward_the_truth() -> None:
    # 40 slow-start curves, 75 of 300 steps seen: the rate is weakly identified. A prior
    # centred at the truth x exp(N(0, 0.25)) with log sd 0.25 (a pilot's K with 10% error
    # plus the real runs' scatter 0.23) more than halves the median error of the final reward
    # (0.108 -> 0.051 on this seeded set, mean 0.117 -> 0.054; its band covers the true final
    # mean in 38 of 40) and pulls the posterior rate toward the truth
    rng = np.random.default_rng(5)
    err_free, err_prior, rate_free, rate_prior, covered = [], [], [], [], []
    for x, truth, y in slow_start_curves(11, 40):
        centre = x * math.exp(rng.normal(0, 0.25))
        free = fit_trajectory(y[:75], **HB)
        fit = fit_trajectory(y[:75], **HB, rate_prior=(centre, 0.25))
        err_free.append(abs(free.predict([299], n_samples=50)[0][0] - truth[-1]))
        mean, low, high = (v[0] for v in fit.predict([299]))
        err_prior.append(abs(mean - truth[-1]))
        covered.append(low <= truth[-1] <= high)
        for f, out in ((free, rate_free), (fit, rate_prior)):
            post = f._rate_posterior("heavy_ball", f._theta)
            log_a = float(post.weight @ post.nl[:, 0])  # posterior mean of log(eta K)
            out.append(abs(log_a - math.log(x * 0.1)))
    assert np.median(err_prior) < 0.5 * np.median(err_free)
    assert np.mean(err_prior) < 0.5 * np.mean(err_free)
    assert np.median(rate_prior) < 0.5 * np.median(rate_free)
    assert np.mean(covered) >= 0.85


def test_a_wrong_prior_with_a_large_sd_does_no_harm() -> None:
    # centred 10x too fast or 10x too slow with log sd 3: Jeffreys' prior, which the
    # log-normal multiplies, dominates. Mean |error| 0.098 / 0.089 against 0.093 prior-free
    # (medians 0.078 / 0.075 against 0.066: 30 curves, the median moves by ~0.01 per curve)
    curves = slow_start_curves(12, 30)
    for factor in (10.0, 0.1):
        err_free, err_wrong = [], []
        for x, truth, y in curves:
            free = fit_trajectory(y[:75], **HB).predict([299], n_samples=50)[0][0]
            wrong = fit_trajectory(y[:75], **HB, rate_prior=(x * factor, 3.0))
            err_free.append(abs(free - truth[-1]))
            err_wrong.append(abs(wrong.predict([299])[0][0] - truth[-1]))
        assert np.mean(err_wrong) <= 1.1 * np.mean(err_free), factor
        assert np.median(err_wrong) <= 1.25 * np.median(err_free), factor


def test_a_tight_correct_prior_gives_the_known_rate_error() -> None:
    # log sd 0.01 at the true rate: the prediction is within 0.005 of the known-rate fit and
    # the median error is that of the known rate (about 0.01 at this noise)
    err_known, err_tight = [], []
    for x, truth, y in slow_start_curves(13, 30):
        known = fit_trajectory(y[:75], **HB, rate_prior=(x, 0.0)).predict([299])[0][0]
        tight = fit_trajectory(y[:75], **HB, rate_prior=(x, 0.01)).predict([299])[0][0]
        assert tight == pytest.approx(known, abs=0.005)
        err_known.append(abs(known - truth[-1]))
        err_tight.append(abs(tight - truth[-1]))
    assert np.median(err_tight) < 0.02
    assert np.median(err_tight) == pytest.approx(np.median(err_known), abs=0.002)


def test_exponential_prior_is_on_the_relaxation_rate() -> None:
    # mu = 0 curve with x = 0.1: the exponential's rate is -ln(1 - x) = 0.105, and a prior
    # with log sd 0 at x reproduces the noise-free curve exactly
    x = 0.1
    y = trajectory(np.arange(200), plateau=0.85, start=0.3, rate=x, momentum=0.0,
                   model="heavy_ball")
    fit = fit_trajectory(y[:12], models=("exponential",), rate_prior=(x, 0.0))
    post = fit._rate_posterior("exponential", fit._theta)
    assert math.exp(post.nl[0, 0]) == pytest.approx(relaxation_rate(x), rel=1e-12)
    np.testing.assert_allclose(fit.predict([50, 199])[0], y[[50, 199]], atol=1e-9)


# ------------------------------------------------------------------------------------ pruner
REF = trajectory(K300, plateau=0.9, start=0.3, rate=0.02, momentum=0.9, model="heavy_ball")
SGD_K = SimpleNamespace(stiffness=1.0, std_error=0.1, optimizer="sgd")


def run_trial(pruner: TrajectoryPruner, seed: int, plateau: float,
              params: dict[str, Any] | None = None, n: int = 75
              ) -> tuple[int | None, dict[str, Any]]:
    """Reference trial (final 0.9), then a heavy-ball trial at x = 0.02 (lr 0.002, K = 1, mu
    0.9) with Gaussian noise 0.05; the first step it is pruned at (None) and its user attrs."""
    rng = np.random.default_rng(seed)
    y = trajectory(K300, plateau=plateau, start=0.3, rate=0.02, momentum=0.9,
                   model="heavy_ball") + rng.normal(0, 0.05, K300.size)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trial(optuna.create_trial(value=float(REF[-1]),
                                        intermediate_values=dict(enumerate(REF.tolist()))))
    trial = study.ask()
    for name, value in (params or {"learning_rate": 0.002, "momentum": 0.9}).items():
        if isinstance(value, str):
            trial.suggest_categorical(name, [value])
        else:
            trial.suggest_float(name, value, value)
    for step in range(n):
        trial.report(float(y[step]), step)
        if trial.should_prune():
            return step, study._storage.get_trial(trial._trial_id).user_attrs
    return None, study._storage.get_trial(trial._trial_id).user_attrs


def test_pruner_uses_the_stiffness_prior() -> None:
    # a trial that will end at 0.75 against a reference of 0.9: from 75 of 300 steps the
    # prior-free band cannot tell (pruned in 1 of 5 seeds, at step 60); with the pilot's K
    # the trial's rate is known to ~25% and it is pruned in every seed by step 70
    sd = math.hypot(0.1, _MODEL_SCATTER["sgd"])
    with_k, without = [], []
    for seed in range(5):
        step, attrs = run_trial(TrajectoryPruner(n_warmup_steps=40, n_steps=299,
                                                 stiffness=SGD_K), seed, 0.75)
        assert step is not None and step <= 70
        assert attrs["advisor:rate_prior"] == pytest.approx([0.002 * 1.0 / 0.1, sd])
        assert attrs["advisor:predicted_best_case"] < 0.9
        with_k.append(step)
        without.append(run_trial(TrajectoryPruner(n_warmup_steps=40, n_steps=299), seed,
                                 0.75)[0])
    assert sum(s is not None for s in without) <= 2
    assert all(w is None or k <= w for k, w in zip(with_k, without, strict=True))
    # a trial as good as the reference is not pruned with the prior
    for seed in range(5):
        assert run_trial(TrajectoryPruner(n_warmup_steps=40, n_steps=299, stiffness=SGD_K),
                         seed, 0.9)[0] is None


def test_pruner_accepts_a_stiffness_estimate_and_a_stability_model() -> None:
    est = StiffnessEstimate(stiffness=1.0, stiffness_current=None, stiffness_sampler=None,
                            std_error=0.1, std_error_current=None, std_error_sampler=None,
                            plateau=0.9, rates=(0.02,), curve_stiffness=(1.0,),
                            learning_rates=(0.002,), linear=True, spread=0.0, optimizer="sgd",
                            method="pinned", n_curves=1, message="")
    from advisor import StabilityModel

    # the real StabilityModel has .stiffness (a property) and .estimate but no .std_error
    for stiffness in (est, StabilityModel(est)):
        step, attrs = run_trial(TrajectoryPruner(n_warmup_steps=40, n_steps=299,
                                                 stiffness=stiffness), 1, 0.75)
        assert step is not None and "advisor:rate_prior" in attrs
    with pytest.raises(TypeError, match=re.escape(
            "`stiffness` must be an advisor.StiffnessEstimate (from advisor.estimate_stiffness)"
            ", an advisor.StabilityModel, or an object with .stiffness and .std_error, got "
            "float.")):
        TrajectoryPruner(stiffness=0.96)
    with pytest.raises(ValueError, match=re.escape(
            "`stiffness.std_error` must be a finite number in [0, inf], got nan.")):
        TrajectoryPruner(stiffness=SimpleNamespace(stiffness=1.0, std_error=math.nan))
    with pytest.raises(ValueError, match=re.escape(
            "`stiffness.stiffness` must be a finite number in (0, inf], got -1.0.")):
        TrajectoryPruner(stiffness=SimpleNamespace(stiffness=-1.0, std_error=0.1))
    with pytest.raises(ValueError, match=re.escape(
            "`model_scatter` must be a finite number in [0, inf], got -0.2.")):
        TrajectoryPruner(stiffness=SGD_K, model_scatter=-0.2)


@pytest.mark.parametrize(("params", "message"), [
    ({"momentum": 0.9}, "a trial has no 'learning_rate'"),
    ({"learning_rate": "fast", "momentum": 0.9}, "a trial's learning_rate is not a positive"),
    ({"learning_rate": 0.002, "optim": "adamw_torch"}, "a trial runs optimizer 'adamw_torch' "
                                                       "but the stiffness was measured with sgd"),
])
def test_pruner_falls_back_without_the_prior_and_warns_once(params: dict[str, Any],
                                                            message: str) -> None:
    # the trial's decisions are those of the prior-free pruner; one warning, no exception
    plain = run_trial(TrajectoryPruner(n_warmup_steps=40, n_steps=299), 3, 0.75, params)
    pruner = TrajectoryPruner(n_warmup_steps=40, n_steps=299, stiffness=SGD_K)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step, attrs = run_trial(pruner, 3, 0.75, params)
        run_trial(pruner, 4, 0.75, params)  # a second trial: no second warning
    ours = [w for w in caught if issubclass(w.category, AdvisorWarning)
            and message in str(w.message)]
    assert len(ours) == 1
    assert step == plain[0]
    assert "advisor:rate_prior" not in attrs


def test_pruner_prior_maps_the_trial_to_its_dimensionless_rate() -> None:
    # SGD heavy ball: x = lr K / (1 - mu); AdamW (its own K): x = lr K
    sgd = TrajectoryPruner(stiffness=SimpleNamespace(stiffness=0.96, std_error=0.048,
                                                     optimizer="sgd"))
    assert sgd._prior({"learning_rate": 0.003, "momentum": 0.9}) == pytest.approx(
        (0.003 * 0.96 / 0.1, math.hypot(0.05, 0.23)))
    assert sgd._prior({"learning_rate": 0.01, "optim": "sgd",
                       "optim_args": "momentum=0.5"}) == pytest.approx(
        (0.01 * 0.96 / 0.5, math.hypot(0.05, 0.23)))
    adam = TrajectoryPruner(stiffness=SimpleNamespace(stiffness=130.0, std_error=6.5,
                                                      optimizer="adamw"),
                            defaults={"learning_rate": 2e-4})
    # (the prune hook merges `defaults` under the trial's params before asking for the prior)
    expected = (2e-4 * 130, math.hypot(0.05, 0.58))
    assert adam._prior({**adam._defaults, "adam_beta1": 0.9}) == pytest.approx(expected)
    scatter = TrajectoryPruner(stiffness=SimpleNamespace(stiffness=1.0, std_error=0.0),
                               model_scatter=0.1)  # no .optimizer: no optimizer check
    assert scatter._prior({"learning_rate": 0.01, "optim": "adamw_torch"}) == pytest.approx(
        (0.01, 0.1))

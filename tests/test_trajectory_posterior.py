"""The rate posterior behind `TrajectoryFit.predict`'s point prediction (one-rate models)."""

from __future__ import annotations

import numpy as np
import pytest
from _posterior_oracle import exponential_posterior
from _posterior_oracle import weighted_median

from advisor import _trajectory_fit as _fitting
from advisor import _trajectory_models as _models
from advisor.dynamics import fit_trajectory
from advisor.dynamics import trajectory


def _posterior(fit):  # the posterior predict() integrates over
    t, y, pinned = fit._data
    mu = 0.0 if fit.momentum is None else fit.momentum
    return _fitting.rate_posterior(fit.model, t, y, pinned, fit._theta, fit._inflate, mu)


def _least_squares(fit, steps: list[float]) -> np.ndarray:
    mu = 0.0 if fit.momentum is None else fit.momentum
    return _models.evaluate(fit.model, fit._theta, np.asarray(steps, dtype=float), mu)


def test_posterior_median_matches_a_brute_force_oracle() -> None:
    # weakly identified: 25 points, 1 e-fold; the oracle integrates the same posterior on a
    # dense (log rate, plateau, amplitude) grid, sigma integrated out (prior 1/sigma), with
    # the exponential's Jeffreys factor written out analytically: dPhi/dlog(rate) = -x t e^-xt
    rng = np.random.default_rng(3)
    t = np.arange(25.0)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    fit = fit_trajectory(y, models=("exponential",))
    assert fit._inflate == 1.0  # no autocorrelation tempering: the oracle has none
    horizon = 120.0
    median = fit.predict([horizon], n_samples=50)[0][0]
    least_squares = _least_squares(fit, [horizon])[0]

    post = exponential_posterior(t, y, horizon)
    oracle = weighted_median(post["values"], post["log_w"])
    assert abs(least_squares - oracle) > 0.03  # the case discriminates
    assert median == pytest.approx(oracle, abs=1e-3)


@pytest.mark.parametrize(("model", "mu"), [("exponential", None), ("heavy_ball", 0.9)])
def test_noise_free_curve_is_its_own_posterior_median(model: str, mu: float | None) -> None:
    k = np.arange(80)
    truth = trajectory(np.arange(400), plateau=0.85, start=0.3, rate=0.03,
                       momentum=mu or 0.0, model="heavy_ball" if mu else "exponential")
    fit = fit_trajectory(truth[:80], models=(model,), momentum=mu)
    mean = fit.predict([79, 200, 399], n_samples=50)[0]
    np.testing.assert_allclose(mean, truth[[79, 200, 399]], atol=1e-7)
    assert k.size == fit.n_points


def test_rate_posterior_recovers_the_rate_and_agrees_with_least_squares() -> None:
    # well identified (300 points, 4 e-folds of the slow root): the posterior is narrow,
    # centred on the truth, resolved by its grid, and its median is the least-squares curve
    rng = np.random.default_rng(4)
    k = np.arange(300)
    x = 0.15  # eta K = 0.015, zeta = 0.41 (oscillatory)
    truth = trajectory(k, plateau=0.8, start=0.35, rate=x, momentum=0.9, model="heavy_ball")
    y = truth + rng.normal(0, 0.02, k.size)
    fit = fit_trajectory(y, models=("heavy_ball",), momentum=0.9)
    post = _posterior(fit)
    assert post is not None and post.weight.sum() == pytest.approx(1.0)
    log_a = post.nl[:, 0]
    mean = float(post.weight @ log_a)
    sd = float(np.sqrt(post.weight @ (log_a - mean) ** 2))
    assert np.exp(mean) / 0.1 == pytest.approx(x, rel=0.03)  # a = x (1 - mu)
    assert 0 < sd < 0.03
    assert np.max(np.diff(log_a)) < 0.5 * sd  # the zoomed grid resolves the posterior
    median = fit.predict([150, 299, 600], n_samples=50)[0]
    np.testing.assert_allclose(median, _least_squares(fit, [150, 299, 600]), atol=2e-3)
    np.testing.assert_allclose(median, [truth[150], truth[299], 0.8], atol=0.01)


def test_posterior_median_beats_least_squares_on_weakly_identified_prefixes() -> None:
    # 60 slow-start heavy-ball curves (mu = 0.9, damping 0.7-2), 75 of 300 steps seen (median
    # 0.9 e-folds of the slow root), Gaussian noise 0.05: the least-squares rate is weakly
    # identified and its extrapolated final reward has heavy tails. Mean |error| of the final
    # reward: posterior median 0.117, least squares 0.196 on this seeded set (medians 0.091,
    # 0.125; seeds 12 and 13: 0.087 vs 0.127 and 0.082 vs 0.115).
    rng = np.random.default_rng(11)
    k = np.arange(300)
    err_post, err_ls = [], []
    for _ in range(60):
        zeta = rng.uniform(0.7, 2.0)
        x = 0.1 / (4 * zeta**2)
        p0, p_star = rng.uniform(0.1, 0.4), rng.uniform(0.6, 0.95)
        truth = trajectory(k, plateau=p_star, start=p0, rate=x, momentum=0.9,
                           model="heavy_ball")
        y = truth + rng.normal(0, 0.05, k.size)
        fit = fit_trajectory(y[:75], models=("heavy_ball",), momentum=0.9)
        err_post.append(abs(fit.predict([299], n_samples=50)[0][0] - truth[-1]))
        err_ls.append(abs(_least_squares(fit, [299])[0] - truth[-1]))
    assert np.mean(err_post) < 0.8 * np.mean(err_ls)
    assert np.median(err_post) < np.median(err_ls)


def test_pinned_plateau_posterior_median() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(40)
    y = trajectory(t, plateau=0.9, start=0.4, rate=0.05) + rng.normal(0, 0.02, t.size)
    fit = fit_trajectory(y, models=("exponential",), plateau=0.9)
    mean = fit.predict([20, 10_000], n_samples=50)[0]
    assert mean[1] == pytest.approx(0.9, abs=1e-12)  # the response has decayed to p*
    assert mean[0] == pytest.approx(_least_squares(fit, [20])[0], abs=5e-3)


def test_heavy_ball_rows_match_the_elementwise_response() -> None:
    # per-row branch selection (real or complex roots) returns the same values
    t = np.arange(120.0)
    for mu in (0.0, 0.5, 0.9):
        a = np.exp(np.linspace(np.log(1e-5), np.log(1 + mu) - 1e-9, 90))[:, None]
        rows = _models.phi_heavy_ball(t, a, mu)
        one_by_one = np.vstack([_models.phi_heavy_ball(t, a[i : i + 1], mu)
                                for i in range(a.shape[0])])
        np.testing.assert_array_equal(rows, one_by_one)

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from advisor.dynamics import Regime
from advisor.exceptions import AdvisorWarning
from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel
from advisor.stability import _is_stable
from advisor.stability import _piecewise_multiplier
from advisor.stability import _pure_delay_sliding_rate
from advisor.stability import closed_form_rate
from advisor.stability import critical_rate
from advisor.stability import settling_radius
from advisor.stability._nonlinear import nonlinear_regime
from advisor.stability._nonlinear import scan_lattice
from advisor.stability._nonlinear import simulated_edge
from advisor.stability._theory import _first_edge


def _estimate(k: float = 0.5, kc: float | None = 1.25, se: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(stiffness=k, stiffness_current=kc,
                           stiffness_sampler=None if kc is None else k - kc, std_error=se,
                           optimizer="sgd")


REFERENCE = _estimate()  # GRPO-faithful 2-arm bandit: K = 0.5, K_c = 1.25, K_o = -0.75
STALE = _estimate(kc=0.0)  # pure delay, same K
EDGE = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128, horizon_steps=150,
                    optimizer="sgd")


# ---------------------------------------------------------------------------------------------
# known values of the exact linear test
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kref", [1, 2, 3, 4, 8, 16, 32])
def test_pure_delay_piecewise_mu0_is_two_over_kref(kref: int) -> None:
    # mu = 0: the period map is e -> (1 - K_ref eta K) e, so eta K K_ref < 2 exactly
    assert critical_rate(0.0, kref, rtol=1e-10) * kref == pytest.approx(2.0, rel=1e-8)
    # the default tolerance: the unstable end of a bracket of relative width 1e-5
    assert 0.0 <= critical_rate(0.0, kref) * kref / 2.0 - 1.0 <= 1e-5


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.8, 0.9, 0.99])
def test_sliding_lag_one_pure_delay_is_one_minus_mu(mu: float) -> None:
    assert critical_rate(mu, 1, refresh_scheme="sliding", rtol=1e-10) == pytest.approx(
        1 - mu, rel=1e-8)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("d", [2, 3, 5, 16])
def test_sliding_pure_delay_matches_omega_root_formula(mu: float, d: int) -> None:
    # (d - 1/2) w + arg(e^{iw} - mu) = pi/2, eta K* = 2 sin(w/2) |e^{iw} - mu| (exact)
    expected = _pure_delay_sliding_rate(d, mu)
    assert critical_rate(mu, d, refresh_scheme="sliding", rtol=1e-10) == pytest.approx(
        expected, rel=1e-7)
    if mu == 0.0:
        assert expected == pytest.approx(2 * math.sin(math.pi / (2 * (2 * d + 1))), rel=1e-9)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_on_policy_bound(mu: float) -> None:
    assert critical_rate(mu, 1, current_fraction=2.5) == pytest.approx(2 * (1 + mu), rel=1e-8)


# bandit-findings.md section 5, "Per-lag thresholds at mu = 0.8" (eta*; K = 0.5). The table
# prints 3 significant digits, hence rel=6e-3.
@pytest.mark.parametrize(("rc", "scheme", "lags", "eta_star"), [
    (2.5, "piecewise", [2, 4, 8, 16, 32], [1.68, 2.52, 2.78, 2.85, 2.87]),
    (2.5, "sliding", [1, 3, 6, 16, 31], [1.80, 0.588, 0.220, 0.087, 0.093]),
    (0.0, "piecewise", [2, 4, 8, 16, 32], [0.900, 0.327, 0.168, 0.095, 0.033]),
    (0.0, "sliding", [1, 3, 6, 16, 31], [0.400, 0.145, 0.078, 0.033, 0.018]),
])
def test_reference_thresholds_match_bandit_findings(rc, scheme, lags, eta_star) -> None:
    got = critical_rate(0.8, lags, current_fraction=rc, refresh_scheme=scheme) / 0.5
    np.testing.assert_allclose(got, eta_star, rtol=6e-3, atol=6e-4)


def test_model_exact_method_reproduces_reference_value() -> None:
    model = StabilityModel(REFERENCE)
    eta = model.max_learning_rate(momentum=0.8, refresh_interval=3, refresh_scheme="sliding",
                                  method="exact")
    assert float(eta) == pytest.approx(0.588, rel=2e-3)


def test_closed_form_method_is_the_papers_line() -> None:
    model = StabilityModel(REFERENCE)
    eta = model.max_learning_rate(momentum=[0.0, 0.8], refresh_interval=[1, 4],
                                  method="closed_form")
    np.testing.assert_allclose(eta, [1.0 / 0.5, 0.2 / (0.5 * 4)], rtol=1e-12)
    np.testing.assert_allclose(closed_form_rate(0.5, [0, 2]), [np.inf, 0.25])


# ---------------------------------------------------------------------------------------------
# oracles: Floquet test against the recurrence, vectorised against loops
# ---------------------------------------------------------------------------------------------
def _simulate_linear(a: float, mu: float, rc: float, kref: int, n: int = 6000) -> float:
    """max |e| over the last 10% of steps of the piecewise recurrence started at e = 1."""
    e = ep = eo = 1.0
    tail = 0.0
    for k in range(n):
        if k % kref == 0:
            eo = e
        e, ep = (1 + mu - a * rc) * e - mu * ep - a * (1 - rc) * eo, e
        if abs(e) > 1e100:  # clearly growing; stop before overflow
            return math.inf
        if k >= 0.9 * n:
            tail = max(tail, abs(e))
    return tail


def test_floquet_test_agrees_with_simulated_recurrence(rng: np.random.Generator) -> None:
    a = 10 ** rng.uniform(-2, 0.5, 40)
    mu = rng.choice([0.0, 0.5, 0.8], 40)
    rc = rng.choice([0.0, 2.5, -0.2], 40)
    kref = rng.integers(1, 9, 40)
    stable = _is_stable(a, mu, rc, kref, "piecewise")
    rho = np.abs(_piecewise_multiplier(a, mu, rc, kref)) ** (1.0 / kref)
    for i in range(40):
        if abs(rho[i] - 1) < 2e-3:  # too close to the edge to decide in 6000 steps
            continue
        decayed = _simulate_linear(a[i], mu[i], rc[i], int(kref[i])) < 1e-2
        assert decayed == stable[i], f"config {i}: a={a[i]}, mu={mu[i]}, K_ref={kref[i]}"


def test_floquet_multiplier_matches_matrix_power_eigenvalues(rng: np.random.Generator) -> None:
    for _ in range(20):
        a, mu, rc = rng.uniform(0.01, 2), rng.uniform(0, 0.95), rng.uniform(-1, 3)
        kref = int(rng.integers(1, 20))
        s = np.array([[1 + mu - a * rc, -mu, -a * (1 - rc)], [1, 0, 0], [0, 0, 1.0]])
        r = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0.0]])
        expected = np.abs(np.linalg.eigvals(np.linalg.matrix_power(s, kref) @ r)).max()
        got = abs(_piecewise_multiplier(a, mu, rc, kref))
        assert got == pytest.approx(expected, rel=1e-9)


def test_critical_rate_vectorised_equals_loop() -> None:
    mus = np.array([0.0, 0.3, 0.8, 0.9])
    lags = np.array([1, 2, 5, 12])
    grid = critical_rate(mus[:, None], lags[None, :], current_fraction=2.5)
    for i, m in enumerate(mus):
        for j, g in enumerate(lags):
            assert grid[i, j] == pytest.approx(float(critical_rate(m, g, current_fraction=2.5)),
                                               rel=1e-12)


def test_assess_many_equals_assess_loop() -> None:
    model = StabilityModel(REFERENCE, edge=EDGE)
    lrs, mus, spgs = [0.01, 0.05, 0.3, 3.0], [0.0, 0.5, 0.9, 0.0], [1, 4, 2, 8]
    many = model.assess_many({"learning_rate": lrs, "momentum": mus,
                              "steps_per_generation": spgs}, details=True)
    for i in range(4):
        v = model.assess({"learning_rate": lrs[i], "momentum": mus[i],
                          "steps_per_generation": spgs[i]})
        assert many["stable"][i] == v.stable
        assert many["margin"][i] == pytest.approx(v.margin, rel=1e-9)
        assert many["probability"][i] == pytest.approx(v.probability, rel=1e-9)
        assert many["layer"][i] == v.layer
        assert many["regime"][i] == v.regime


def test_assess_many_table_path_is_close_to_exact(rng: np.random.Generator) -> None:
    # more than 4096 configs switch to the momentum table; its error is interpolation only
    n = 5000
    model = StabilityModel(REFERENCE)
    params = {"learning_rate": np.full(n, 0.1), "momentum": rng.uniform(0, 0.95, n),
              "steps_per_generation": rng.choice([1, 2, 4, 8], n)}
    table = model.assess_many(params)["max_learning_rate"]
    idx = rng.choice(n, 200, replace=False)
    exact = model.max_learning_rate(momentum=params["momentum"][idx],
                                    refresh_interval=params["steps_per_generation"][idx],
                                    method="theory")
    rel = np.abs(table[idx] / exact - 1)
    assert np.median(rel) < 1e-3 and rel.max() < 0.05


# ---------------------------------------------------------------------------------------------
# nonlinear check
# ---------------------------------------------------------------------------------------------
def test_safety_factor_applies_only_in_nonlinear_regime() -> None:
    model = StabilityModel(REFERENCE, safety=2.5)
    exact = model.max_learning_rate(momentum=[0.8, 0.8, 0.3], refresh_interval=[4, 1, 4],
                                    method="exact")
    theory = model.max_learning_rate(momentum=[0.8, 0.8, 0.3], refresh_interval=[4, 1, 4],
                                     method="theory")
    # lagged mu >= 0.5: the safety factor; on-policy mu = 0.8: the measured momentum factor
    # 1.44 (no bandit to simulate); mu = 0.3 with a lag: the exact linear test
    np.testing.assert_allclose(theory / exact, [1 / 2.5, 1 / 1.44, 1.0], rtol=1e-12)
    off = StabilityModel(REFERENCE, nonlinear_check=False)
    assert float(off.max_learning_rate(momentum=0.8, refresh_interval=4)) == pytest.approx(
        float(exact[0]))


def test_simulated_check_finds_the_bandit_edge() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    model = StabilityModel(REFERENCE, problem=bandit.BanditProblem.reference(),
                           simulation_steps=4000)
    eta = float(model.max_learning_rate(momentum=0.8, refresh_interval=4))
    # bandit-findings.md section 5: empirical 1.13 against the linear 2.52 (8 bisections of a
    # 1/40-decade bracket resolve it to 0.1%; the table gives 3 digits)
    assert eta == pytest.approx(1.13, rel=0.03)
    assert model.assess({"learning_rate": 1.5, "momentum": 0.8,
                         "steps_per_generation": 4}).stable is False


# ---------------------------------------------------------------------------------------------
# calibration layer
# ---------------------------------------------------------------------------------------------
def test_combine_recovers_exponents_from_synthetic_edges() -> None:
    a_true, b_true = 0.7, 0.3
    base = dict(horizon_steps=150, optimizer="sgd")

    def edge(b: float, k: float, n_runs: int = 4) -> EdgeEstimate:
        x = 0.02 * (b / 64) ** a_true * (k / 1) ** b_true
        return EdgeEstimate(rate=x, low=0.9 * x, high=1.1 * x, samples_per_step=b,
                            refresh_interval=k, n_runs=n_runs, **base)

    only_b = EdgeEstimate.combine([edge(64, 1, 8), edge(256, 1)])
    assert only_b.batch_exponent == pytest.approx(a_true, abs=1e-9)
    assert only_b.refresh_exponent is None and only_b.samples_per_step == 64
    both = EdgeEstimate.combine([edge(64, 1, 8), edge(256, 1), edge(64, 8)])
    assert both.batch_exponent == pytest.approx(a_true, abs=1e-9)
    assert both.refresh_exponent == pytest.approx(b_true, abs=1e-9)
    x, _ = both.predict(samples_per_step=512, refresh_interval=4)
    assert float(x) == pytest.approx(0.02 * 8**a_true * 4**b_true, rel=1e-9)


def test_default_transfer_is_conservative_in_both_directions() -> None:
    up, _ = EDGE.predict(samples_per_step=4 * 128)
    down, _ = EDGE.predict(samples_per_step=128 / 4)
    assert float(up) == pytest.approx(0.025 * 4**0.4)  # raise at most by the low exponent
    assert float(down) == pytest.approx(0.025 / 4)  # lower by the high exponent (1.0)
    k_up, _ = EDGE.predict(refresh_interval=8)
    # refresh exponent -0.5: the built-in task SGD edge halved at K_ref = 4; never assume growth
    assert float(k_up) == pytest.approx(0.025 * 8**-0.5)
    reuse, sigma = EDGE.predict(num_iterations=8)
    assert float(reuse) == pytest.approx(0.025 * 0.5)  # batch reuse: 0.5x at 8
    assert float(sigma) > EDGE.log_sigma


def test_calibration_moves_with_heavy_ball_momentum_and_wins_when_tighter() -> None:
    model = StabilityModel(REFERENCE, edge=EDGE)
    eta = model.max_learning_rate(momentum=[0.0, 0.9], samples_per_step=128)
    np.testing.assert_allclose(eta, [0.025 / 0.5, 0.0025 / 0.5], rtol=1e-12)
    v = model.assess({"learning_rate": 0.04, "momentum": 0.0,
                      "per_device_train_batch_size": 128})
    assert v.layer == "calibration" and v.stable
    assert v.margin == pytest.approx(math.log(0.05 / 0.04))
    assert "measured edge" in v.reason


def test_adamw_model_ignores_beta1_and_requires_zero_momentum() -> None:
    est = SimpleNamespace(stiffness=130.0, stiffness_current=None, stiffness_sampler=None,
                          std_error=5.0, optimizer="adamw")
    edge = dataclasses.replace(EDGE, rate=0.09, low=0.08, high=0.1, optimizer="adamw")
    with pytest.warns(AdvisorWarning, match="pure delay"):
        model = StabilityModel(est, edge=edge)
    base = {"learning_rate": 5e-4, "optim": "adamw_torch", "per_device_train_batch_size": 128}
    v0 = model.assess({**base, "adam_beta1": 0.0})
    v9 = model.assess({**base, "adam_beta1": 0.9})
    assert v0.max_learning_rate == pytest.approx(v9.max_learning_rate)
    assert v0.max_learning_rate == pytest.approx(0.09 / 130.0)
    with pytest.raises(ValueError, match="`momentum` must be 0 for AdamW"):
        model.max_learning_rate(momentum=0.9)


# ---------------------------------------------------------------------------------------------
# probability, regime, damping, time constant, refresh interval
# ---------------------------------------------------------------------------------------------
def test_probability_is_monotone_in_margin() -> None:
    model = StabilityModel(_estimate(se=0.05), edge=EDGE)
    lrs = np.geomspace(1e-3, 1.0, 200)
    out = model.assess_many({"learning_rate": lrs, "momentum": 0.0,
                             "per_device_train_batch_size": 64})
    order = np.argsort(out["margin"])
    assert np.all(np.diff(out["probability"][order]) >= -1e-15)
    assert np.all(out["stable"] == (out["margin"] > 0))
    # one layer active: P = Phi(margin / sigma) is 1/2 at the edge
    theory_only = StabilityModel(_estimate(se=0.05))
    edge_lr = float(theory_only.max_learning_rate())
    assert theory_only.probability_stable({"learning_rate": edge_lr, "momentum": 0.0}) == \
        pytest.approx(0.5, abs=1e-6)


def test_damping_ratio_crosses_one_at_discrete_critical_damping() -> None:
    model = StabilityModel(_estimate(k=1.0, kc=1.0))  # on-policy, K = 1
    mu = 0.8
    crit = (1 - math.sqrt(mu)) ** 2  # double root of z^2 - (1 + mu - a) z + mu
    assert model.damping_ratio({"learning_rate": 0.97 * crit, "momentum": mu}) > 1.0
    assert model.damping_ratio({"learning_rate": 1.03 * crit, "momentum": mu}) < 1.0
    assert model.regime({"learning_rate": 0.5 * crit, "momentum": mu}) is Regime.MONOTONE
    # the linear edge 2(1 + mu) = 3.6 divided by the on-policy momentum factor 1.44 at mu = 0.8
    assert model.regime({"learning_rate": 2.4, "momentum": mu}) is Regime.OSCILLATORY
    assert model.regime({"learning_rate": 2.6, "momentum": mu}) is Regime.DIVERGENT
    linear = StabilityModel(_estimate(k=1.0, kc=1.0), nonlinear_check=False)
    assert linear.regime({"learning_rate": 3.0, "momentum": mu}) is Regime.OSCILLATORY
    assert linear.regime({"learning_rate": 4.0, "momentum": mu}) is Regime.DIVERGENT


def test_time_constant_of_plain_gradient_descent() -> None:
    model = StabilityModel(_estimate(k=2.0, kc=2.0))
    tau = model.time_constant({"learning_rate": 0.05, "momentum": 0.0})
    assert tau == pytest.approx(-1.0 / math.log(1 - 0.1), rel=1e-9)


def test_max_refresh_interval_pure_delay() -> None:
    model = StabilityModel(STALE)
    # mu = 0 pure delay: stable iff eta K K_ref < 2; eta K = 0.15 -> K_ref <= 13
    assert model.max_refresh_interval({"learning_rate": 0.3, "momentum": 0.0}) == 13.0
    assert model.max_refresh_interval({"learning_rate": 1e-4, "momentum": 0.0},
                                      limit=8) == math.inf


def test_knob_parsing_uses_trl_refresh_interval() -> None:
    model = StabilityModel(STALE)
    params = {"learning_rate": 0.05, "momentum": 0.0, "steps_per_generation": 8,
              "gradient_accumulation_steps": 2}
    v = model.assess(params)  # K_ref = spg / GA = 4
    assert v.max_learning_rate == pytest.approx(2.0 / (0.5 * 4), rel=1e-5)  # edge rtol
    with pytest.warns(AdvisorWarning, match="fractional refresh interval"):
        model.assess({**params, "steps_per_generation": 3})


# ---------------------------------------------------------------------------------------------
# serialisation and bad input
# ---------------------------------------------------------------------------------------------
def test_to_dict_round_trips_through_json() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    model = StabilityModel(REFERENCE, edge=EDGE, problem=bandit.BanditProblem.hard_prompt(),
                           batch_exponent=0.6, safety=3.0)
    data = json.loads(json.dumps(model.to_dict()))
    again = StabilityModel.from_dict(data)
    assert again.to_dict() == model.to_dict()
    kw = dict(momentum=[0.0, 0.5], refresh_interval=[1, 2], samples_per_step=256)
    np.testing.assert_allclose(again.max_learning_rate(**kw, method="exact"),
                               model.max_learning_rate(**kw, method="exact"))


@pytest.mark.parametrize(("estimate", "kwargs", "match"), [
    (_estimate(k=-0.1), {}, r"`estimate.stiffness` must be a finite number > 0"),
    (_estimate(k=float("nan")), {}, r"`estimate.stiffness` must be a finite number > 0"),
    (_estimate(se=-1.0), {}, r"`estimate.std_error` must be >= 0"),
    (REFERENCE, {"safety": 0.5}, r"`safety` must be a finite number in \[1, inf\]"),
    (REFERENCE, {"optimizer": "rmsprop"}, r"`optimizer` must be one of 'sgd', 'adamw'"),
    (REFERENCE, {"edge": dataclasses.replace(EDGE, optimizer="adamw")},
     r"`edge.optimizer` must match"),
    (REFERENCE, {"batch_exponent": 5.0}, r"`batch_exponent` must be a finite number"),
])
def test_model_rejects_bad_input(estimate, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        StabilityModel(estimate, **kwargs)


def test_model_rejects_wrong_edge_type() -> None:
    with pytest.raises(TypeError, match=r"`edge` must be an EdgeEstimate"):
        StabilityModel(REFERENCE, edge={"rate": 0.1})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rate": 0.0}, r"`rate` must be a finite number in \(0, inf\]"),
    ({"low": 0.03}, r"`low` must be a finite number in \(0, 0.025\]"),
    ({"high": 0.01}, r"`high` must be a finite number in \[0.025, inf\]"),
    ({"horizon_steps": 0}, r"`horizon_steps` must be an integer >= 1"),
    ({"optimizer": "adam"}, r"`optimizer` must be one of 'sgd', 'adamw'"),
    ({"refresh_interval": 0.5}, r"`refresh_interval` must be a finite number in \[1, inf\]"),
])
def test_edge_rejects_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(EDGE, **kwargs)


def test_combine_rejects_underdetermined_edges() -> None:
    other = dataclasses.replace(EDGE, samples_per_step=256, refresh_interval=4)
    with pytest.raises(ValueError, match=r"`edges` must vary one condition at a time"):
        EdgeEstimate.combine([EDGE, other])
    with pytest.raises(ValueError, match=r"`edges` must be at least two EdgeEstimate"):
        EdgeEstimate.combine([EDGE])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"momentum": 1.0}, r"`momentum` must be a finite number in \[0, 1\)"),
    ({"refresh_interval": 0}, r"`refresh_interval` must be a finite number >= 1"),
    ({"method": "linear"}, r"`method` must be one of"),
    ({"method": "calibrated"}, r"`method` must not be 'calibrated' without an edge"),
    ({"optimizer": "adamw"}, r"`optimizer` must be 'sgd'"),
    ({"refresh_scheme": "async"}, r"`refresh_scheme` must be one of"),
])
def test_max_learning_rate_rejects_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        StabilityModel(REFERENCE).max_learning_rate(**kwargs)


@pytest.mark.parametrize(("params", "match"), [
    ({"momentum": [0.1]}, r"`params` must contain 'learning_rate'"),
    ({"learning_rate": [0.1, -1.0]}, r"`learning_rate` must be a finite number in \(0, inf\], "
                                     r"got -1.0 at index 1"),
    ({"learning_rate": [0.1], "momentum": [1.5]}, r"`momentum` must be a finite number"),
    ({"learning_rate": [0.1], "optim": ["adamw_torch"]}, r"`optimizer` must be 'sgd'"),
])
def test_assess_many_rejects_bad_input(params, match) -> None:
    with pytest.raises(ValueError, match=match):
        StabilityModel(REFERENCE).assess_many(params)


def test_missing_split_warns_and_uses_pure_delay() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = StabilityModel(_estimate(kc=None))
    assert any(issubclass(w.category, AdvisorWarning) for w in caught)
    assert model.current_fraction == 0.0
    assert float(model.max_learning_rate(refresh_interval=4, method="exact")) == \
        pytest.approx(2.0 / (0.5 * 4), rel=1e-5)  # the edge's default rtol


# ---------------------------------------------------------------------------------------------
# finite horizon and the benchmark script
# ---------------------------------------------------------------------------------------------
def _tail_deviation(a: float, mu: float, n: int) -> float:
    """On-policy heavy ball from e = -1 at rest: max |e| over the last 10% of n steps."""
    e = ep = -1.0
    tail = 0.0
    for k in range(n):
        e, ep = (1 + mu - a) * e - mu * ep, e
        if k >= 0.9 * n:
            tail = max(tail, abs(e))
    return tail


def test_horizon_edge_matches_settling_of_the_recurrence() -> None:
    # bandit-findings.md section 5 calls a run divergent if |p - p*| > 1% of the gap over the
    # last 10% of the run; with a horizon the theory uses the same rule for oscillating modes
    mu, n = 0.8, 2000
    a_h = float(critical_rate(mu, 1, current_fraction=1.0, horizon_steps=n))
    assert a_h < float(critical_rate(mu, 1, current_fraction=1.0)) == pytest.approx(3.6)
    # the mode amplitude is O(1) of the gap, so the 1% rule holds within a few percent in rate
    assert _tail_deviation(0.97 * a_h, mu, n) < 0.01 < _tail_deviation(1.03 * a_h, mu, n)
    # slow monotone relaxation is never called unstable: tiny rates stay stable
    assert bool(_is_stable(np.array([1e-6]), np.array([mu]), 1.0, np.array([1]), "piecewise",
                           0.99)[0])


def test_benchmark_smoke(tmp_path) -> None:
    import os
    import pathlib
    import subprocess
    import sys

    pytest.importorskip("advisor.bandit")
    root = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "benchmarks" / "prediction_accuracy.py"), "--momenta", "0",
           "--max-lag", "2", "--n-lr", "6", "--n-steps", "300", "--pilot-steps", "1500",
           "--schemes", "piecewise"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "model meets all targets in" in out.stdout


def test_multi_mode_problem_is_checked_by_simulation() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    problem = bandit.BanditProblem.five_arm()
    # K of the stiffer mode (what the pilot tail measures here) and a split that makes the
    # scalar test visibly conservative for sliding lag (bandit-findings.md section 10 caveat)
    est = _estimate(k=0.3277, kc=1.128)
    model = StabilityModel(est, problem=problem, simulation_steps=1000, horizon_steps=1000)
    linear = float(model.max_learning_rate(momentum=0.5, refresh_interval=3,
                                           refresh_scheme="sliding", method="exact"))
    checked = float(model.max_learning_rate(momentum=0.5, refresh_interval=3,
                                            refresh_scheme="sliding"))
    k_true = bandit.jacobian_stiffness(problem)[0]
    lattice = scan_lattice(30 * 0.5 / (k_true * 1000), 8 * 1.5 / k_true)[0]
    truth = float(bandit.empirical_threshold(problem, momentum=0.5, refresh_interval=3,
                                             refresh_scheme="sliding", n_steps=1000,
                                             n_bisect=8, lr_range=(lattice[0], lattice[-1]),
                                             n_grid=lattice.size)[0])
    assert linear < 0.7 * truth  # the scalar test is far off for 5 arms
    # the model's scan (built from the measured K) and the ground truth's (Jacobian K) test the
    # same lattice points; 8 bisections of a 1/40-decade step leave a factor 10^(1/10240)
    assert checked == pytest.approx(truth, rel=1e-3)


def test_scan_lattice_is_shared_by_different_ranges() -> None:
    a = scan_lattice(0.0123, 1.0)[0]
    b = scan_lattice([0.0171, 0.05], [0.9, 2.0])
    assert 0.0123 <= a[0] < 0.0123 * 10 ** (1 / 40) and a[-1] >= 1.0
    assert np.allclose(np.diff(np.log10(a)), 1 / 40)
    assert b.shape[0] == 2 and b[0, 0] >= 0.0171 and b[1, -1] >= 2.0
    # every point of both rows lies on a's lattice 10^(j/40)
    j = 40 * np.log10(b)
    assert np.allclose(j, np.rint(j), atol=1e-9)


def test_wide_check_extends_its_scan_below_a_divergent_bottom() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    problem = bandit.BanditProblem.reference()
    k_true, n = bandit.jacobian_stiffness(problem)[0], 300
    lattice = scan_lattice(30 / (k_true * n), 8 / k_true)[0]
    truth = float(bandit.empirical_threshold(problem, refresh_interval=1, n_steps=n, n_bisect=8,
                                             lr_range=(lattice[0], lattice[-1]),
                                             n_grid=lattice.size)[0])
    # a K 150x too small puts the whole scan above the edge (its bottom, 30/(K N), diverges)
    k_bad = k_true / 150
    assert 30 / (k_bad * n) > 2 * truth
    edge = simulated_edge(problem, np.array([0.0]), np.array([1]), scheme="piecewise",
                          eta_lin=np.array([np.inf]), wide=True, stiffness=k_bad, n_steps=n,
                          cache={})
    assert float(edge[0]) == pytest.approx(truth, rel=1e-3)  # same lattice, same bisection


def test_known_bandit_caps_every_configuration() -> None:
    mu, lag = np.array([0.0, 0.5, 0.9]), np.array([1, 3, 8])
    for scheme in ("piecewise", "sliding"):
        assert nonlinear_regime(mu, lag, scheme=scheme, surrogate="ratio",
                                problem_known=True).all()
        # the stale surrogate too (the linear test over-predicts it on-policy at mu 0.8 by 37%)
        assert nonlinear_regime(mu, lag, scheme=scheme, surrogate="stale",
                                problem_known=True).all()
        assert not nonlinear_regime(mu, lag, scheme=scheme, surrogate="stale",
                                    problem_known=False).any()
    unknown = nonlinear_regime(mu, lag, scheme="piecewise", surrogate="ratio",
                               problem_known=False)
    assert unknown.tolist() == [False, True, True]
    assert not nonlinear_regime(mu, lag, scheme="sliding", surrogate="ratio",
                                problem_known=False).any()


def test_known_bandit_lowers_the_on_policy_bound_to_the_simulated_edge() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    problem = bandit.BanditProblem.reference()
    mu, n = 0.5, 2000
    model = StabilityModel(REFERENCE, problem=problem, simulation_steps=n, horizon_steps=n)
    kw = dict(momentum=mu, refresh_interval=0, refresh_scheme="sliding")
    linear = float(model.max_learning_rate(**kw, method="exact"))
    # on-policy bound eta K < 2(1 + mu) = 3, a little lower with the 2000-step horizon rule
    assert 0.995 * 6.0 < linear < 6.0
    k_true = bandit.jacobian_stiffness(problem)[0]
    lattice = scan_lattice(30 * (1 - mu) / (k_true * n), 8 * (1 + mu) / k_true)[0]
    truth = float(bandit.empirical_threshold(problem, momentum=mu, refresh_interval=0,
                                             refresh_scheme="sliding", n_steps=n, n_bisect=8,
                                             lr_range=(lattice[0], lattice[-1]),
                                             n_grid=lattice.size)[0])
    assert truth < 0.95 * linear  # the bandit blows up ~10% below the linear bound
    assert float(model.max_learning_rate(**kw)) == pytest.approx(truth, rel=1e-3)


def test_check_never_scans_below_the_settling_floor() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    # hard prompt (K_c < 0), sliding lag 28: the linear edge is so low that eta_lin / 16 lies
    # below 30 (1 - mu) / (K N), where a 2000-step run cannot settle and reads "divergent"
    est = _estimate(k=0.6287, kc=-0.1107)
    model = StabilityModel(est, problem=bandit.BanditProblem.hard_prompt(),
                           simulation_steps=2000, horizon_steps=2000)
    kw = dict(momentum=0.5, refresh_interval=28, refresh_scheme="sliding")
    linear = float(model.max_learning_rate(**kw, method="exact"))
    assert linear / 16 < 30 * 0.5 / (0.6287 * 2000)
    checked = float(model.max_learning_rate(**kw))
    assert checked > 0.9 * linear  # the simulation confirms the linear edge (ratio: ~1)
    assert bool(model.is_stable(0.5 * linear, **kw))


def test_edge_from_scan_in_heavy_ball_units() -> None:
    lrs = [0.001, 0.0015, 0.0022, 0.0022, 0.0032, 0.0032]
    bad = [False, False, True, True, False, True]  # 0.0032: one of two seeds collapsed
    edge = EdgeEstimate.from_scan(lrs, bad, stiffness=0.93, momentum=0.9, samples_per_step=128,
                                  horizon_steps=150, optimizer="sgd")
    assert edge.high == pytest.approx(0.0022 * 0.93 / 0.1)
    assert edge.low == pytest.approx(0.0015 * 0.93 / 0.1)
    assert edge.n_runs == 6
    model = StabilityModel(_estimate(k=0.93, kc=0.93), edge=edge)
    # the edge transfers to mu = 0 as x* (1 - 0) / K
    assert float(model.max_learning_rate(momentum=0.0, samples_per_step=128,
                                         method="calibrated")) == pytest.approx(
        math.sqrt(0.0015 * 0.0022) / 0.1)
    with pytest.raises(ValueError, match=r"`unstable` must mark at least one rate unstable"):
        EdgeEstimate.from_scan(lrs, [False] * 6, stiffness=1.0, samples_per_step=128,
                               horizon_steps=150, optimizer="sgd")
    with pytest.raises(ValueError, match=r"`learning_rates` must start below the edge"):
        EdgeEstimate.from_scan(lrs, [True] * 6, stiffness=1.0, samples_per_step=128,
                               horizon_steps=150, optimizer="sgd")


def _sliding_tail(a: float, mu: float, rc: float, d: int, n: int) -> float:
    """Linear sliding-lag recurrence from e = -1 at rest: max |e| over the last 10% of steps."""
    hist = [-1.0] * (d + 2)  # e_{k}, e_{k-1}, ..., e_{k-d-1}; e_j = e_0 for j < 0
    tail = 0.0
    for k in range(n):
        e, ep, eo = hist[0], hist[1], hist[d]
        new = (1 + mu - a * rc) * e - mu * ep - a * (1 - rc) * eo
        hist = [new] + hist[:-1]
        if abs(new) > 1e6:
            return math.inf
        if k >= 0.9 * n:
            tail = max(tail, abs(new))
    return tail


def test_horizon_edge_is_the_trajectory_rule_not_the_unit_amplitude_bound() -> None:
    # 2-arm reference split (K_c/K = 2.5), sliding lag 20, mu = 0.5: the slow oscillating mode
    # starts well below the unit amplitude that settling_radius assumes, so that bound is 5-11%
    # low against the bandit; the horizon edge follows the recurrence's own 1%-tail rule
    rc, mu, d, n = 2.5, 0.5, 20, 2000
    kw = dict(current_fraction=rc, refresh_scheme="sliding")
    a_inf = float(critical_rate(mu, d, **kw))
    a_h = float(critical_rate(mu, d, **kw, horizon_steps=n))
    radius_only = float(_first_edge(np.array([mu]), np.array([d]), np.array([rc]), "sliding",
                                    settling_radius(n))[0])
    assert radius_only < 0.97 * a_h and a_h < a_inf
    # independent recurrence (pure Python): settles just below a_h, not just above
    tail = [_sliding_tail(f * a_h, mu, rc, d, n) for f in (0.999, 1.001)]
    assert tail[0] < 0.01 < tail[1]
    # the pointwise test agrees with the edge
    model = StabilityModel(_estimate(k=0.5, kc=1.25), horizon_steps=n)
    got = model.is_stable(np.array([0.99, 1.01]) * a_h / 0.5, momentum=mu, refresh_interval=d,
                          refresh_scheme="sliding", method="exact")
    assert got.tolist() == [True, False]


def test_is_stable_finds_islands_above_the_first_edge() -> None:
    # a 2-arm GRPO bandit (benchmark seed 3, random #1): K = 1.4209, K_c = 1.9088, sliding lag
    model = StabilityModel(_estimate(k=1.4209, kc=1.9088), horizon_steps=2000)
    kw = dict(momentum=0.9, refresh_interval=12, refresh_scheme="sliding")
    edge = float(model.max_learning_rate(**kw, method="exact"))
    etas = np.geomspace(edge * 1.01, 4 * edge, 60)
    stable = model.is_stable(etas, **kw, method="exact")
    assert stable.any() and not stable[0]
    island_start = int(np.argmax(stable))
    gap = float(np.sqrt(etas[0] * etas[island_start - 1]))  # inside the unstable band
    rc = 1.9088 / 1.4209
    # the recurrence confirms both: settles on the island, does not settle in the gap
    assert _sliding_tail(float(etas[island_start]) * 1.4209, 0.9, rc, 12, 2000) < 0.01
    assert _sliding_tail(gap * 1.4209, 0.9, rc, 12, 2000) > 0.01
    # assess is conservative: the island counts as unstable there
    below = model.is_stable(np.geomspace(edge / 10, edge * 0.99, 20), **kw, method="exact")
    assert below.all()


# ---------------------------------------------------------------------------------------------
# speed: multisection edge vs the bisection it replaced; chaotic boundary of the simulated check
# ---------------------------------------------------------------------------------------------
def _bisection_edge(mu: np.ndarray, lag: np.ndarray, rc: float, scheme: str) -> np.ndarray:
    """The former `_first_edge`: the same 48-point scan, then 36 sequential bisections."""
    hi, lo = 2.0 * (1.0 + mu), 1e-3 * (1.0 - mu) / np.maximum(lag, 1)
    grid = lo[:, None] * (hi / lo)[:, None] ** np.linspace(0.0, 1.0, 48)[None, :]
    rcs = np.full(mu.shape, rc)
    bad = ~_is_stable(grid, mu[:, None], rcs[:, None], lag[:, None], scheme)
    first = np.where(bad.any(1), bad.argmax(1), 48)
    out = hi.copy()
    rows = np.flatnonzero((first > 0) & (first < 48))
    left, right = grid[rows, first[rows] - 1], grid[rows, first[rows]]
    for _ in range(36):
        mid = np.sqrt(left * right)
        st = _is_stable(mid, mu[rows], rcs[rows], lag[rows], scheme)
        left, right = np.where(st, mid, left), np.where(st, right, mid)
    out[rows] = right
    return out


@pytest.mark.parametrize("scheme", ["piecewise", "sliding"])
@pytest.mark.parametrize("rc", [-0.2, 0.0, 0.7, 2.5])
def test_multisection_edge_equals_the_bisection_edge(scheme: str, rc: float) -> None:
    # grid of (mu, K_ref or d): the default rtol 1e-5 is the stated tolerance of the speed-up
    mu_v = np.array([0.0, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99])
    lag_v = np.arange(1, 33) if scheme == "piecewise" else np.array([0, 1, 2, 3, 5, 8, 13, 20])
    mu, lag = (v.ravel() for v in np.meshgrid(mu_v, lag_v))
    rcs = np.full(mu.shape, rc)
    # (sliding: `critical_rate` takes the boundary locus; the scan + multisection is its
    # fallback and is tested here directly)
    new = _first_edge(mu, lag, rcs, scheme, 1.0)
    old = _bisection_edge(mu, lag, rc, scheme)
    # the batched bisection replays the sequential one: same bracket path, stopped at 1e-5
    assert np.allclose(new, old, rtol=1e-5, atol=0.0)
    assert (new >= old * (1 - 1e-12)).all()  # the unstable end of a bracket holding `old`
    tight = _first_edge(mu, lag, rcs, scheme, 1.0, rtol=1e-10)
    assert np.allclose(tight, old, rtol=1e-9, atol=0.0)


def test_edge_does_not_depend_on_the_batch_size(rng: np.random.Generator) -> None:
    # large batches bisect 1-2 levels per call, small ones 4: the same path, the same edge
    mu, lag = rng.uniform(0.0, 0.95, 5000), rng.integers(1, 33, 5000)
    big = critical_rate(mu, lag, current_fraction=2.5)
    small = np.concatenate([critical_rate(mu[i:i + 250], lag[i:i + 250], current_fraction=2.5)
                            for i in range(0, 5000, 250)])
    assert np.allclose(big, small, rtol=2e-5, atol=0.0)


def test_critical_rate_rejects_bad_rtol() -> None:
    with pytest.raises(ValueError, match=r"`rtol` must be"):
        critical_rate(0.5, 4, rtol=0.5)


def test_refine_finds_a_sliver_between_lattice_points() -> None:
    from advisor.stability._nonlinear import _SIM_REFINE
    from advisor.stability._nonlinear import _refine

    grid = scan_lattice([0.1], [1.0])  # 10^(j/40), 41 points
    first = np.array([30])  # the lattice says: first divergent point grid[0, 30]
    fine = 40 * _SIM_REFINE  # the refinement's lattice 10^(j/fine)
    sliver = (grid[0, 27] * 10 ** (1 / fine), grid[0, 27] * 10 ** (1.5 / fine))  # 1/3 of a step

    def diverged(eta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return ((eta >= sliver[0]) & (eta <= sliver[1])) | (eta >= grid[0, 30])

    low = grid[:, 0]  # runs settle down to the scan's bottom
    a, b = _refine(grid, first, low, np.array([0]), diverged)
    assert not diverged(a, None)[0] and diverged(b, None)[0]
    assert b[0] == pytest.approx(sliver[0]) and a[0] == pytest.approx(grid[0, 27])
    # no sliver: the bracket is the fine point below the lattice edge and the edge itself
    a, b = _refine(grid, first, low, np.array([0]), lambda e, r: e >= grid[0, 30])
    assert b[0] == grid[0, 30] and a[0] == pytest.approx(grid[0, 30] / 10 ** (1 / fine))
    # never below the floor (a point known to settle)
    a, b = _refine(grid, first, grid[:, 29], np.array([0]), diverged)
    assert b[0] == grid[0, 30] and a[0] >= grid[0, 29]
    # the window reaches below the scan's bottom: a sliver there is found (simulated anew)
    shallow = grid[:, 26:]  # a scan that starts at grid[0, 26]; its first divergence is index 4
    deep = (grid[0, 22] * 10 ** (1 / fine), grid[0, 22] * 10 ** (1.5 / fine))
    calls = []

    def diverged_deep(eta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        calls.append(eta)
        return ((eta >= deep[0]) & (eta <= deep[1])) | (eta >= grid[0, 30])

    a, b = _refine(shallow, np.array([4]), grid[:, 0], np.array([0]), diverged_deep)
    assert b[0] == pytest.approx(deep[0])
    tested = np.concatenate(calls)
    assert tested.min() >= grid[0, 30] * 10 ** (-12 / 40) * (1 - 1e-9)  # 12 lattice steps down


def test_simulated_check_sees_a_chaotic_boundary_below_the_lattice_edge() -> None:
    bandit = pytest.importorskip("advisor.bandit")
    # the seed-19 miss: 3 arms (mean-field), piecewise refresh, mu = 0.5, K_ref = 20. Between
    # lr ~1.42 and ~1.62 divergence comes and goes in 1-5% slivers; the 10^(1/40) lattice saw
    # the first divergence at 1.617, and the benchmark grid hit a sliver at 1.55 (false-safe)
    problem = bandit.BanditProblem(
        rewards=(0.40969260241546834, 0.4365209757061609, 0.6132452258279074),
        ref_probs=(0.7282628605305861, 0.04410069573751943, 0.22763644373189454),
        beta=0.544863436704561)
    kw = dict(momentum=0.5, refresh_interval=20, n_steps=2000)
    edge = float(simulated_edge(problem, np.array([0.5]), np.array([20]), scheme="piecewise",
                                eta_lin=np.array([4.0]), wide=False, stiffness=0.0368,
                                n_steps=2000, cache={})[0])
    lattice = scan_lattice(0.25, 4.0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coarse = float(bandit.empirical_threshold(problem, **kw, n_bisect=8,
                                                  lr_range=(lattice[0], lattice[-1]),
                                                  n_grid=lattice.size)[0])
    assert coarse == pytest.approx(1.617, rel=2e-3)
    assert 1.40 < edge < 0.95 * coarse
    # the edge diverges, a hole above it settles, and a 0.36% scan below it finds no divergence
    runs = bandit.simulate(problem, learning_rate=[edge, 1.5486], **kw)
    assert [r is Regime.DIVERGENT for r in runs.regimes()] == [True, False]
    below = bandit.simulate(problem, learning_rate=edge * 10 ** (-np.arange(1, 33) / 640), **kw)
    assert not any(r is Regime.DIVERGENT for r in below.regimes())


def _seed5_hard_prompt_model() -> tuple[object, StabilityModel]:
    bandit = pytest.importorskip("advisor.bandit")
    # an unseen hard prompt (benchmark --seed 5 --kind hard, #0): p_ref 0.155, beta 3.21
    problem = bandit.BanditProblem(rewards=(0.0, 1.0),
                                   ref_probs=(0.8454436229980321, 0.15455637700196787),
                                   beta=3.2130005069324663)
    est = _estimate(k=1.1552873040331302, kc=0.5981547560579292)
    return problem, StabilityModel(est, problem=problem, simulation_steps=2000,
                                   horizon_steps=2000)


def _divergent(problem: object, eta: list[float], **kw: object) -> list[bool]:
    from advisor.bandit import simulate

    run = simulate(problem, learning_rate=eta, n_steps=2000, **kw)
    return [r is Regime.DIVERGENT for r in run.regimes()]


def test_known_bandit_may_exceed_the_on_policy_bound_with_piecewise_refresh() -> None:
    problem, model = _seed5_hard_prompt_model()
    kw = dict(momentum=0.0, refresh_interval=5, refresh_scheme="piecewise")
    linear = float(model.max_learning_rate(**kw, method="exact"))
    assert linear == pytest.approx(2.0 / 1.1552873040331302, rel=1e-4)  # eta K < 2
    edge = float(model.max_learning_rate(**kw))
    assert edge > 1.05 * linear  # the bandit settles above the on-policy bound
    assert _divergent(problem, [linear * 1.02, edge * 0.995, edge], momentum=0.0,
                      refresh_interval=5) == [False, False, True]


def test_simulation_replaces_the_conservative_linear_horizon_rule() -> None:
    problem, model = _seed5_hard_prompt_model()
    kw = dict(momentum=0.5, refresh_interval=28, refresh_scheme="sliding")
    horizon_linear = float(model.max_learning_rate(**kw, method="exact"))
    edge = float(model.max_learning_rate(**kw))
    assert edge > 1.25 * horizon_linear  # the unit-offset trajectory overstates the slow mode
    assert _divergent(problem, [horizon_linear * 1.2, edge * 0.995, edge], momentum=0.5,
                      refresh_interval=28, refresh_scheme="sliding") == [False, False, True]


def test_sgd_model_reads_a_config_without_optimizer_as_sgd() -> None:
    est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25, stiffness_sampler=-0.75,
                          std_error=0.02)
    model = StabilityModel(est)
    plain = model.assess({"learning_rate": 0.5})
    assert plain.max_learning_rate == pytest.approx(
        model.assess({"learning_rate": 0.5, "momentum": 0.0}).max_learning_rate)
    with pytest.raises(ValueError, match="`optimizer` must be 'sgd'"):
        model.assess({"learning_rate": 0.5, "optim": "adamw_torch"})
    # an AdamW model keeps TRL's default optimizer
    adamw = StabilityModel(est, optimizer="adamw")
    assert adamw.assess({"learning_rate": 1e-3}).layer in ("theory", "calibration")


# ------------------------------------------------------------- user-acceptance regressions
_SPLIT = SimpleNamespace(stiffness=0.5, stiffness_current=1.25, stiffness_sampler=-0.75,
                         std_error=0.01)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"momentum": True}, TypeError, "`momentum` must be a real number or an array of them, "
                                    "got booleans"),
    ({"momentum": "0.5"}, TypeError, "`momentum` must be a real number .* got str"),
    ({"momentum": None}, TypeError, "`momentum` must be a real number .* got NoneType"),
    ({"refresh_interval": "4"}, TypeError, "`refresh_interval` must be a real number"),
    ({"refresh_interval": None}, TypeError, "`refresh_interval` must be a real number"),
    ({"samples_per_step": 0}, ValueError, r"`samples_per_step` must be a finite number in "
                                          r"\(0, inf\], got 0.0"),
    ({"samples_per_step": float("nan")}, ValueError, "`samples_per_step` must be a finite"),
    ({"num_iterations": 0}, ValueError, r"`num_iterations` must be a finite number in \[1"),
    ({"num_iterations": 2.5}, ValueError, "`num_iterations` must be an integer >= 1, got 2.5"),
    ({"momentum": [0.0, 0.5], "refresh_interval": [1, 2, 4]}, ValueError,
     "The condition arrays must broadcast to one shape"),
])
def test_condition_arrays_reject_bad_types_and_values(kwargs, error, match) -> None:
    # before: booleans, strings and None were coerced ("got nan" for None), samples_per_step
    # 0 gave a max learning rate of 0 and negative values NaN, num_iterations 2.5 was used
    edge = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128,
                        horizon_steps=150, optimizer="sgd")
    model = StabilityModel(_SPLIT, edge=edge)
    with pytest.raises(error, match=match):
        model.max_learning_rate(**kwargs)
    with pytest.raises(error, match=match):
        model.is_stable(0.1, **kwargs)


def test_condition_errors_name_the_first_bad_entry() -> None:
    model = StabilityModel(_SPLIT)
    lr = np.r_[np.full(1000, 0.1), -1.0]
    # before: the whole array was printed in the message
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number in \(0, "
                                         r"inf\], got -1.0 at index 1000\.$"):
        model.is_stable(lr)


def test_edge_predict_rejects_impossible_conditions() -> None:
    edge = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128,
                        horizon_steps=150, optimizer="sgd")
    # before: samples 0 predicted an edge of 0, num_iterations 0 an infinite one
    with pytest.raises(ValueError, match="`samples_per_step` must be a finite number"):
        edge.predict(samples_per_step=0)
    with pytest.raises(ValueError, match="`num_iterations` must be a finite number in"):
        edge.predict(num_iterations=0)
    with pytest.raises(ValueError, match="`refresh_interval` must be a finite number in"):
        edge.predict(refresh_interval=0.5)
    with pytest.raises(ValueError, match="`batch_exponent` must be a finite number"):
        edge.predict(batch_exponent=5.0)


@pytest.mark.parametrize(("params", "error", "match"), [
    ({"learning_rate": ["0.5"]}, TypeError, "`learning_rate` must be .* got strings"),
    ({"learning_rate": [True]}, TypeError, "`learning_rate` must be .* got booleans"),
    ({"learning_rate": [0.5, 1.0, 2.0], "momentum": [0.0, 0.5]}, ValueError,
     r"`params` values must be scalars or 1-D arrays of one length, got learning_rate \(3,\), "
     r"momentum \(2,\)"),
    ({"learning_rate": [0.5], "momentum": ["0.5"]}, TypeError, "`momentum` must be"),
])
def test_assess_many_rejects_non_numbers(params, error, match) -> None:
    # before: "0.5" and True were read as numbers; a length mismatch gave numpy's message
    with pytest.raises(error, match=match):
        StabilityModel(_SPLIT).assess_many(params)


def test_assess_requires_a_learning_rate() -> None:
    model = StabilityModel(_SPLIT)
    # before: a config without learning_rate was assessed at TRL's default 1e-6 (margin 15.6)
    with pytest.raises(ValueError, match="`params` must contain 'learning_rate'"):
        model.assess({"momentum": 0.5})
    with pytest.raises(ValueError, match="`params` must contain 'learning_rate'"):
        model.max_refresh_interval({"momentum": 0.5})
    with pytest.raises(TypeError, match="`params` must be a mapping"):
        model.assess(0.5)  # type: ignore[arg-type]
    fixed = StabilityModel(_SPLIT, defaults={"learning_rate": 0.5})
    assert fixed.assess({"momentum": 0.0}).max_learning_rate == pytest.approx(4.0)


def test_model_construction_errors_are_clear() -> None:
    with pytest.raises(TypeError, match="`estimate` must be a StiffnessEstimate"):
        StabilityModel(0.5)
    with pytest.raises(TypeError, match="`estimate` must be a StiffnessEstimate"):
        StabilityModel({"stiffness": 0.5})  # type: ignore[arg-type]
    bad = SimpleNamespace(stiffness=0.5, stiffness_current="x", stiffness_sampler=0.0,
                          std_error=0.0)
    with pytest.raises(TypeError, match="`estimate.stiffness_current` must be a real number"):
        StabilityModel(bad)
    # before: an unknown default was accepted and failed at the first assess
    with pytest.raises(ValueError, match=r"`defaults` must use trl.GRPOConfig field names \(or "
                                         r"'momentum'\), got unknown knob 'lr'"):
        StabilityModel(_SPLIT, defaults={"lr": 0.1})


def test_model_repr_names_its_numbers() -> None:
    text = repr(StabilityModel(_SPLIT))
    assert text.startswith("StabilityModel(K=0.5, K_c/K=2.5, optimizer='sgd', edge=None")


def test_rate_cache_overflow_keeps_the_values_of_the_call(monkeypatch) -> None:
    # before: a call with more new (mu, K_ref) pairs than the cache holds cleared the cache,
    # dropping the pairs found there at the start of the call -> KeyError
    from advisor.stability import _layers

    monkeypatch.setattr(_layers, "_RATE_CACHE_SIZE", 3)
    model = StabilityModel(_SPLIT)
    first = model.max_learning_rate(momentum=[0.1, 0.2], refresh_interval=2)
    both = model.max_learning_rate(momentum=[0.1, 0.2, 0.3, 0.4], refresh_interval=2)
    np.testing.assert_array_equal(both[:2], first)
    fresh = StabilityModel(_SPLIT).max_learning_rate(momentum=[0.3, 0.4], refresh_interval=2)
    np.testing.assert_array_equal(both[2:], fresh)


def test_problem_must_be_a_bandit_problem() -> None:
    # before: any object was stored and failed later inside the nonlinear check
    with pytest.raises(TypeError, match="`problem` must be an advisor.bandit.BanditProblem"):
        StabilityModel(_SPLIT, problem="reference")
    with pytest.raises(TypeError, match="got dict"):
        StabilityModel(_SPLIT, problem={"rewards": [0, 1]})


@pytest.mark.parametrize(("lrs", "flags", "match"), [
    ([0.01, float("nan"), 0.03], [0, 0, 1], r"`learning_rates` must be a finite number in "
                                            r"\(0, inf\], got nan at index 1"),
    ([-0.01, 0.02, 0.03], [0, 0, 1], "`learning_rates` must be a finite number"),
    ([0.01, 0.02, 0.03], [0, float("nan"), 1], r"`unstable` must hold booleans \(or 0/1\)"),
    ([0.01, 0.02, 0.03], ["no", "no", "yes"], r"`unstable` must hold booleans \(or 0/1\)"),
    ([0.01, 0.02, 0.03], [0, 0, 2], r"`unstable` must hold booleans \(or 0/1\)"),
])
def test_edge_from_scan_rejects_ambiguous_input(lrs, flags, match) -> None:
    # before: NaN rates were skipped with "Mean of empty slice" warnings, and NaN / "no" flags
    # were read as True (unstable), moving the edge silently
    with pytest.raises(ValueError, match=match):
        EdgeEstimate.from_scan(lrs, flags, stiffness=1.0, samples_per_step=128,
                               horizon_steps=150, optimizer="sgd")
    edge = EdgeEstimate.from_scan([0.01, 0.02, 0.03], np.array([0, 0, 1]), stiffness=1.0,
                                  samples_per_step=128, horizon_steps=150, optimizer="sgd")
    assert (edge.low, edge.high) == (0.02, 0.03)

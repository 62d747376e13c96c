"""Regression tests for the core API's user-acceptance findings (knobs, bandit, stiffness,
stability, group size): each test names the input that used to be mishandled."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from advisor import group_size
from advisor.bandit import BanditProblem
from advisor.bandit import classify
from advisor.bandit import simulate
from advisor.exceptions import AdvisorWarning
from advisor.knobs import knobs_from_config
from advisor.knobs import knobs_from_params
from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel
from advisor.stiffness import PilotCurve
from advisor.stiffness import estimate_stiffness


REFERENCE = SimpleNamespace(stiffness=0.5, stiffness_current=1.25, stiffness_sampler=-0.75,
                            std_error=0.01)
EDGE = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128, horizon_steps=150,
                    optimizer="sgd")
BATCH_128 = {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 8}


def _estimate(**changes: object) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(REFERENCE), **changes})


# ---------------------------------------------------------------------------------------------
# knobs
# ---------------------------------------------------------------------------------------------
def test_knobs_from_config_rejects_a_dict_and_names_knobs_from_params() -> None:
    # before: "got dict without 'adam_beta1'", which hides that a dict has its own entry point
    with pytest.raises(TypeError, match=r"`config` must be a trl.GRPOConfig.*knobs_from_params"):
        knobs_from_config({"learning_rate": 0.1})


def test_generation_batch_size_error_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"divisible by the global batch size .* got 60\. Use "
                                         r"a multiple of 8 \(e\.g\. 64\)"):
        knobs_from_params({"learning_rate": 1e-5, "generation_batch_size": 60})


# ---------------------------------------------------------------------------------------------
# bandit
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rewards": ["0", "1"]}, r"`rewards` must be a sequence of numbers, got strings"),
    ({"rewards": [False, True]}, r"`rewards` must be a sequence of numbers, got booleans"),
    ({"rewards": [0.0, None]}, r"`rewards` must be a sequence of numbers, got an entry None"),
    ({"rewards": [0, 1], "ref_probs": ["0.5", "0.5"]}, r"`ref_probs` must be a sequence"),
    ({"rewards": [0, 1], "init_logits": [True, False]}, r"`init_logits` must be a sequence"),
])
def test_bandit_problem_rejects_non_numeric_sequences(kwargs: dict, match: str) -> None:
    # before: strings and booleans were converted silently by np.asarray(dtype=float)
    with pytest.raises(TypeError, match=match):
        BanditProblem(**kwargs)


def test_bandit_problem_still_accepts_numeric_containers() -> None:
    ref = BanditProblem.reference()
    assert BanditProblem(rewards=pd.Series([0, 1]), beta=1.0) == ref
    assert BanditProblem(rewards=np.array([0.0, 1.0]), beta=1.0) == ref


@pytest.mark.parametrize("betas", [(0.9,), 0.9, "ab", (0.9, 0.99, 0.999)])
def test_simulate_rejects_adam_betas_that_are_not_a_pair(betas: object) -> None:
    # before: (0.9,) raised IndexError
    with pytest.raises(TypeError, match=r"`adam_betas` must be a pair \(beta1, beta2\)"):
        simulate(BanditProblem.reference(), learning_rate=0.01, optimizer="adam",
                 adam_betas=betas, n_steps=5)  # type: ignore[arg-type]


def test_simulate_sliding_lag_beyond_the_run_is_a_frozen_sampler() -> None:
    # before: the lag history had d + 1 entries, so d = 10**12 tried to allocate ~16 TB
    problem = BanditProblem.reference()
    huge = simulate(problem, learning_rate=[0.01, 0.02], refresh_interval=[3, 10**12],
                    refresh_scheme="sliding", n_steps=20)
    capped = simulate(problem, learning_rate=[0.01, 0.02], refresh_interval=[3, 20],
                      refresh_scheme="sliding", n_steps=20)
    np.testing.assert_array_equal(huge.reward_current, capped.reward_current)
    assert huge.refresh_interval.tolist() == [3, 10**12]  # the run records the lag as given
    # a lag >= n_steps never refreshes: the same as piecewise refresh beyond the run
    piecewise = simulate(problem, learning_rate=0.02, refresh_interval=10**12, n_steps=20)
    np.testing.assert_allclose(huge.reward_current[1], piecewise.reward_current[0], rtol=0,
                               atol=1e-15)


def test_classify_zero_configurations_and_wrong_types() -> None:
    # before: "need at least one array to concatenate"
    out = classify(np.empty((0, 10)), 0.8, 0.5)
    assert isinstance(out, np.ndarray) and out.shape == (0,)
    with pytest.raises(TypeError, match=r"`reward_current` must be an array of rewards, got "
                                        r"strings"):
        classify(["0.5"] * 10, 0.8)


# ---------------------------------------------------------------------------------------------
# stiffness
# ---------------------------------------------------------------------------------------------
def test_rewards_error_messages_are_plain() -> None:
    # before: "got 'array of shape ()'" (quoted) and "got np.float64(nan) at index 1"
    with pytest.raises(ValueError, match=r"must be one-dimensional, got an array of shape "
                                         r"\(\)\.$"):
        PilotCurve(rewards=0.5, learning_rate=0.1)
    curve = PilotCurve(rewards=[0.1, np.nan] + [0.2] * 10, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"must be finite, got nan at index 1\."):
        estimate_stiffness(curve)


def test_frozen_sampler_away_from_the_plateau_warns() -> None:
    # A sampler frozen at the START relaxes to another plateau (0.740, not p* = 0.854) at
    # another rate: K_c = 1.59 instead of 1.25, with a standard error of 1.5e-5.
    problem = BanditProblem.reference()
    on = simulate(problem, learning_rate=[0.05, 0.1], n_steps=600)
    frozen = simulate(problem, learning_rate=0.05, refresh_interval=10**9, n_steps=600)
    curves = [PilotCurve(rewards=on.reward_used[i], learning_rate=eta)
              for i, eta in enumerate((0.05, 0.1))]
    curves.append(PilotCurve(rewards=frozen.reward_current[0], learning_rate=0.05,
                             refresh_scheme="frozen"))
    with pytest.warns(AdvisorWarning, match=r"curves\[2\] \(frozen sampler\) settles at 0\.74"
                                            r".*not frozen at the converged policy"):
        estimate_stiffness(curves)


# ---------------------------------------------------------------------------------------------
# stability model
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("stiffness", "0.5"), ("stiffness", True), ("stiffness_current", "1.25"),
    ("std_error", b"0.1"), ("std_error", np.bool_(False)),
])
def test_model_rejects_string_and_bool_estimates(field: str, value: object) -> None:
    # before: "0.5" was read as 0.5 and True as K = 1
    with pytest.raises(TypeError, match=rf"`estimate.{field}` must be a real number"):
        StabilityModel(_estimate(**{field: value}))


@pytest.mark.parametrize("se", [math.nan, math.inf])
def test_unknown_std_error_is_not_read_as_zero(se: float) -> None:
    # before: NaN/inf became "no uncertainty": P(stable) = 0.694 at lr 3.9 (edge 4.0), the same
    # as std_error = 0. Unknown uncertainty now gives 0.5 from the theory layer, with a warning.
    params = {"learning_rate": 3.9, "momentum": 0.0}
    known = StabilityModel(_estimate(std_error=0.0))
    assert known.probability_stable(params) == pytest.approx(0.6937, abs=1e-4)
    with pytest.warns(AdvisorWarning, match=r"`estimate.std_error` is (nan|inf): K's "
                                            r"uncertainty is unknown"):
        model = StabilityModel(_estimate(std_error=se))
    assert model.probability_stable(params) == pytest.approx(0.5, abs=1e-12)
    assert model.probability_stable({"learning_rate": [0.01, 3.9]}).tolist() == [0.5, 0.5]
    # the bound itself is unchanged
    assert float(model.max_learning_rate()) == pytest.approx(float(known.max_learning_rate()))
    assert model.to_dict()["estimate"]["std_error"] == math.inf


def test_probability_at_a_zero_width_edge_is_a_step() -> None:
    # before: NaN (0/0) plus RuntimeWarnings when low == high == rate and lr sits on the edge
    edge = dataclasses.replace(EDGE, low=0.025, high=0.025)
    model = StabilityModel(REFERENCE, edge=edge, defaults=BATCH_128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prob = model.probability_stable({"learning_rate": [0.04, 0.05, 0.06]})
    assert prob.tolist() == [1.0, 0.0, 0.0]  # eta_max = 0.05: on the edge is not stable
    assert not model.assess({"learning_rate": 0.05}).stable


def test_pandas_containers_work_wherever_knob_dicts_do() -> None:
    model = StabilityModel(REFERENCE)
    frame = pd.DataFrame({"learning_rate": [0.1, 1.0, 10.0], "momentum": [0.0, 0.5, 0.9]})
    cols = {k: frame[k].to_numpy() for k in frame}
    np.testing.assert_array_equal(model.margin(frame), model.margin(cols))
    np.testing.assert_array_equal(model.probability_stable(frame),
                                  model.probability_stable(cols))
    assert [r.value for r in model.regime(frame)] == ["monotone", "oscillatory", "divergent"]
    np.testing.assert_array_equal(model.max_refresh_interval(frame),
                                  model.max_refresh_interval(cols))
    assert model.assess(frame.iloc[1]) == model.assess({"learning_rate": 1.0, "momentum": 0.5})
    with pytest.raises(TypeError, match=r"`params` must be a mapping .* got list"):
        model.assess_many([0.1, 0.2])  # type: ignore[arg-type]


def test_max_refresh_interval_is_vectorised_and_matches_the_scalar_call() -> None:
    # before: array-valued knobs raised TypeError although the issue asks for all vectorised
    model = StabilityModel(REFERENCE, edge=EDGE, defaults=BATCH_128)
    params = {"learning_rate": np.array([1e-3, 0.01, 0.03, 0.04, 0.04, 0.2]),
              "momentum": np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.9]),
              "per_device_train_batch_size": np.array([16, 32, 16, 64, 16, 16])}
    vec = model.max_refresh_interval(params)
    loop = [model.max_refresh_interval({k: v[i] for k, v in params.items()})
            for i in range(6)]
    assert vec.tolist() == loop
    assert vec[0] == math.inf and vec[-1] == 0.0  # stable to the limit; unstable on-policy
    assert model.max_refresh_interval({"learning_rate": []}).shape == (0,)
    pure_delay = StabilityModel(_estimate(stiffness=1.0, stiffness_current=0.0,
                                          stiffness_sampler=1.0, std_error=0.0))
    # pure delay, mu = 0: eta K K_ref < 2, so lr 0.3 (0.45) is stable up to K_ref = 6 (4)
    assert pure_delay.max_refresh_interval({"learning_rate": [0.3, 0.45]}).tolist() == [6.0, 4.0]


def test_edge_from_scan_rejects_momentum_with_adamw() -> None:
    # before: momentum=0.9 with optimizer="adamw" scaled the AdamW edge by 1/(1 - 0.9) = 10x
    with pytest.raises(ValueError, match=r"`momentum` must be 0 with optimizer='adamw', "
                                         r"got 0\.9"):
        EdgeEstimate.from_scan([0.01, 0.02, 0.04], [0, 0, 1], stiffness=1.0, momentum=0.9,
                               samples_per_step=64, horizon_steps=100, optimizer="adamw")


def test_verdict_and_model_round_trip_through_json() -> None:
    model = StabilityModel(REFERENCE, edge=EDGE, defaults=BATCH_128)
    again = StabilityModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.to_dict() == model.to_dict()
    verdict = model.assess({"learning_rate": 0.04, "momentum": 0.0})
    assert verdict.damping_ratio == math.inf  # first-order mode
    # before: to_dict() kept inf, which json.dumps writes as the non-standard `Infinity`
    out = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert out["regime"] == verdict.regime.value and out["damping_ratio"] is None
    assert out["margin"] == pytest.approx(verdict.margin)
    unstable = model.assess({"learning_rate": 5.0, "momentum": 0.0}).to_dict()
    assert unstable["time_constant"] is None and unstable["stable"] is False


# ---------------------------------------------------------------------------------------------
# group size
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", ["8", True, [2, None]])
def test_group_size_wrong_types_raise_type_error(g: object) -> None:
    # before: ValueError "must be integers >= 2" for a string or a bool
    with pytest.raises(TypeError, match=r"`num_generations` must be an integer or an array"):
        group_size.degenerate_group_probability(0.5, g)


def test_group_size_shape_mismatch_and_problem_type() -> None:
    # before: numpy's "operands could not be broadcast" and AttributeError on None
    with pytest.raises(ValueError, match=r"`success_rate` must broadcast against "
                                         r"`num_generations`.*\(2,\) and \(3,\)"):
        group_size.reward_variance([4, 8, 16], scale=1e-3, success_rate=[0.8, 0.9])
    with pytest.raises(ValueError, match=r"`success_rate` must broadcast"):
        group_size.degenerate_group_probability([0.1, 0.2], [2, 4, 8])
    with pytest.raises(TypeError, match=r"`problem` must be an advisor.bandit.BanditProblem, "
                                        r"got NoneType"):
        group_size.stationary_variance(None, 16, learning_rate=0.1)


def test_horizon_rule_does_not_allocate_by_the_refresh_interval() -> None:
    # before: the sliding-lag ring buffer had K_ref + 1 rows for BOTH schemes, so a piecewise
    # K_ref of 10^9 tried to allocate 8 GB per configuration; a lag beyond the horizon reads
    # the start (e = 1) either way, so the answer equals the one at K_ref = n_steps
    from advisor.stability._horizon import _settles

    a, mu = np.array([0.01, 0.5, 0.3]), np.array([0.9, 0.5, 0.0])
    for scheme in ("piecewise", "sliding"):
        huge = _settles(a, mu, 2.5, np.array([10**9, 3, 10**12]), scheme, 300)
        capped = _settles(a, mu, 2.5, np.array([300, 3, 300]), scheme, 300)
        np.testing.assert_array_equal(huge, capped)


def test_stiffness_estimate_records_dropped_points() -> None:
    # before: nan_policy="omit" dropped points without a trace in the result (STYLE 3.4)
    from advisor.dynamics import trajectory

    rewards = trajectory(np.arange(400), plateau=0.85, start=0.5, rate=0.025,
                         model="heavy_ball")
    rewards[[10, 200, 300]] = [np.nan, np.inf, np.nan]
    curves = [PilotCurve(rewards=rewards, learning_rate=0.05),
              PilotCurve(rewards=trajectory(np.arange(400), plateau=0.85, start=0.5, rate=0.05,
                                            model="heavy_ball"), learning_rate=0.1)]
    est = estimate_stiffness(curves, nan_policy="omit")
    assert est.n_dropped_nonfinite == 3
    assert est.stiffness == pytest.approx(0.5, rel=1e-6)  # noise-free: exact tail fit
    assert estimate_stiffness(curves[1]).n_dropped_nonfinite == 0


def test_unused_pinned_plateau_that_contradicts_the_tails_warns() -> None:
    # before: plateau=5.0 was silently ignored (clean tails) and echoed as est.plateau
    from advisor.dynamics import trajectory

    curve = PilotCurve(rewards=trajectory(np.arange(400), plateau=0.85, start=0.5, rate=0.025,
                                          model="heavy_ball"), learning_rate=0.05)
    with pytest.warns(AdvisorWarning, match=r"`plateau`=5 was not used: .* settle at 0\.85"):
        est = estimate_stiffness(curve, plateau=5.0)
    assert est.method == "tail" and est.stiffness == pytest.approx(0.5, rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_stiffness(curve, plateau=0.851)  # consistent with the tail: no warning


def test_simulated_check_that_never_settles_warns() -> None:
    # mu = 0.999 cannot settle within 4000 simulated steps at any rate: the bound is the bottom
    # of the scan (1.6e-7, "nothing is stable"), which used to be returned without a word
    model = StabilityModel(REFERENCE, problem=BanditProblem.reference(), simulation_steps=400)
    with pytest.warns(AdvisorWarning, match=r"No simulated run of the bandit settled within 400 "
                                            r"steps .* momentum 0\.999"):
        bound = float(model.max_learning_rate(momentum=0.999))
    assert bound < 1e-4


def test_regimes_of_a_finite_group_run_warn() -> None:
    # before: stable finite-G runs (lr 0.05, G = 16, settled at 0.836) read "divergent" without
    # a word: the rules need a noise-free trajectory and the infinite-G p* (0.854)
    run = simulate(BanditProblem.reference(), learning_rate=0.05, num_generations=16,
                   n_steps=400, seed=0)
    with pytest.warns(AdvisorWarning, match=r"finite-group run \(num_generations=16\)"):
        run.regimes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = simulate(BanditProblem.reference(), learning_rate=0.05, n_steps=400)
        assert det.regimes()[0].value == "monotone"

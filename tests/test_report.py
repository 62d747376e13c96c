from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from advisor.exceptions import AdvisorError
from advisor.exceptions import AdvisorWarning
from advisor.pilot import PilotRun
from advisor.report import FeasibilityReport
from advisor.report import build_report
from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel
from advisor.study_file import parse_study


DATA = Path(__file__).parent / "data"
FIGURES = {"stability_map": "stability_map.png", "trajectories": "trajectories.png"}
# Set ADVISOR_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change.
UPDATE = os.environ.get("ADVISOR_UPDATE_GOLDEN") == "1"


def _fixed_pilot() -> tuple[StabilityModel, SimpleNamespace, optuna.Study, object]:
    """A fixed pilot: measured numbers of a real TRL scan (tests/data/report_pilot.json)."""
    d = json.loads((DATA / "report_pilot.json").read_text())
    with pytest.warns(AdvisorWarning, match="no current/sampler split"):
        model = StabilityModel(SimpleNamespace(**d["stiffness"]), edge=EdgeEstimate(**d["edge"]))
    runs = tuple(PilotRun(name=f"scan-{i}-{seed}", purpose="scan", learning_rate=lr, seed=seed,
                          samples_per_step=128, target_steps=150, steps_done=150,
                          unstable=bad, reason="drop_from_peak" if bad else "stable",
                          unstable_step=None, error=None, seconds=33.0,
                          seconds_per_step=0.22, seconds_per_generation=0.14, rewards=(0.34,))
                 for i, (lr, bad) in enumerate(d["scan"]) for seed in (0, 1))
    pilot = SimpleNamespace(runs=runs, **{k: d[k] for k in (
        "samples_per_step", "momentum", "cost_steps", "cost_seconds", "seconds_per_step",
        "seconds_per_generation", "start_reward")})
    study = optuna.create_study(direction="maximize")
    dists = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
             "momentum": optuna.distributions.FloatDistribution(0.0, 0.9),
             "steps_per_generation": optuna.distributions.IntDistribution(1, 8)}
    for t in d["trials"]:
        study.add_trial(optuna.trial.create_trial(
            params={k: t[k] for k in dists}, distributions=dists, value=t["value"],
            user_attrs={"advisor:collapsed": t["collapsed"]}))
    spec = parse_study({"name": "golden", "objective": {"kind": "builtin:tiny"},
                        "search_space": d["search_space"], "fixed": d["fixed"],
                        "budget": {"steps": 150}, "storage": {"url": "sqlite:///:memory:"}})
    return model, pilot, study, spec


@pytest.fixture(scope="module")
def report() -> FeasibilityReport:
    model, pilot, study, spec = _fixed_pilot()
    return build_report(model, study=spec, pilot=pilot, optuna_study=study, n_samples=2048)


def test_markdown_matches_the_golden_file(report: FeasibilityReport) -> None:
    md = report.to_markdown(figures=FIGURES)
    golden = DATA / "report_golden.md"
    if UPDATE:
        golden.write_text(md)
    assert md == golden.read_text(), "rerun with ADVISOR_UPDATE_GOLDEN=1 if the change is meant"


def _assert_close(actual: object, expected: object, path: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), path
        for k in expected:
            _assert_close(actual[k], expected[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        # 4 significant digits are stored; 2e-3 relative absorbs a last-digit flip
        assert actual == pytest.approx(expected, rel=2e-3, abs=1e-12), path
    else:
        assert actual == expected, path


def test_json_matches_the_golden_file(report: FeasibilityReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    golden = DATA / "report_golden.json"
    if UPDATE:
        golden.write_text(json.dumps(data, indent=2) + "\n")
    _assert_close(data, json.loads(golden.read_text()))


def test_calibrated_edge_known_values(report: FeasibilityReport) -> None:
    mu0 = report.panels[0]
    assert mu0.momentum == 0.0
    # on-policy at the scan's batch the calibrated edge is the measured one: x* (1 - mu) / K
    assert mu0.calibrated[0] == pytest.approx(0.01622 / 0.963, rel=1e-6)
    # heavy ball: the edge scales by (1 - mu) in learning-rate units (theory.md section 6)
    mu9 = report.panels[-1]
    assert mu9.momentum == 0.9
    assert mu9.calibrated[0] == pytest.approx(0.1 * mu0.calibrated[0], rel=1e-6)
    # at the pilot's refresh interval the band is the scan bracket itself: the edge is measured
    # in learning rate, so the stiffness error (0.04 / 0.963) cancels and must not widen it
    assert mu0.refresh_interval[0] == 1
    assert mu0.band_low[0] == pytest.approx(0.01339 / 0.963, rel=1e-6)
    assert mu0.band_high[0] == pytest.approx(0.01965 / 0.963, rel=1e-6)
    # away from it the default refresh exponent is a guess: the band widens by the same factor
    # on both sides of the bracket (log-symmetric), more the farther K_ref is from 1
    widen = [lo / c / (0.01339 / 0.01622) for lo, c in zip(mu0.band_low, mu0.calibrated,
                                                             strict=True)]
    for hi, c, w in zip(mu0.band_high, mu0.calibrated, widen, strict=True):
        assert hi / c == pytest.approx(0.01965 / 0.01622 / w, rel=1e-6)
    assert widen[0] == pytest.approx(1.0) and all(np.diff(widen) < 0)
    # the paper's line eta K K_ref = 1 - mu
    for k, cf in zip(mu9.refresh_interval, mu9.closed_form, strict=True):
        assert cf == pytest.approx(0.1 / (0.963 * k), rel=1e-9)


def test_feasible_fraction_agrees_with_a_direct_count(report: FeasibilityReport) -> None:
    """Oracle: the sampled fraction equals a brute-force grid estimate within sampling error."""
    model, _, _, _ = _fixed_pilot()
    rng = np.random.default_rng(123)
    n = 20_000
    lr = np.exp(rng.uniform(np.log(1e-4), 0.0, n))
    mu = rng.choice(np.linspace(0.0, 0.9, 16), n)  # the report's momentum levels
    spg = rng.integers(1, 9, n)
    ok = model.assess_many({"learning_rate": lr, "momentum": mu, "steps_per_generation": spg,
                            "optim": "sgd", "per_device_train_batch_size": 128,
                            "num_generations": 8})["stable"]
    # binomial standard error of 2048 samples at p ~ 0.2 is ~0.009; 4 sigma
    assert report.feasible_fraction == pytest.approx(float(np.mean(ok)), abs=0.04)
    lr_iv = next(iv for iv in report.intervals if iv.name == "learning_rate")
    assert lr_iv.feasible_high <= float(lr[ok].max()) * 1.05


def test_points_and_trials_are_carried(report: FeasibilityReport) -> None:
    assert len(report.pilot_points) == 18
    assert sum(p["unstable"] for p in report.pilot_points) == 8
    assert report.trials["finished"] == 3 and report.trials["collapsed"] == 1
    assert report.trials["best_value"] == pytest.approx(0.88)
    assert [p["state"] for p in report.trial_points] == ["complete", "complete", "collapsed"]


def test_warnings_say_what_they_rest_on(report: FeasibilityReport) -> None:
    assert report.warnings
    assert {w.basis for w in report.warnings} <= {"measurement", "theory"}
    texts = " ".join(w.text for w in report.warnings)
    assert "150 steps" in texts  # the horizon caveat of the measured edge
    assert "33%" in texts  # 1 of 3 trials collapsed


def test_trajectories_start_at_the_start_and_approach_the_plateau(
        report: FeasibilityReport) -> None:
    assert len(report.trajectories) == 3
    for t in report.trajectories:
        assert t["mean"][0] == pytest.approx(0.343)
        assert t["low"][-1] <= t["mean"][-1] <= t["high"][-1] <= 0.914 + 1e-9
        # time constant of the heavy-ball map at rate x = lr K: -1 / ln(1 - x)
        x = t["learning_rate"] * 0.963
        assert t["time_constant"] == pytest.approx(-1.0 / math.log(1.0 - x), rel=1e-3)


def test_group_size_table_known_value(report: FeasibilityReport) -> None:
    row = next(r for r in report.group_sizes
               if r["success_rate"] == 0.343 and r["num_generations"] == 8)
    assert row["degenerate_probability"] == pytest.approx(0.343**8 + 0.657**8, rel=1e-9)


def test_write_produces_all_documents(report: FeasibilityReport, tmp_path: Path) -> None:
    paths = report.write(tmp_path / "rep")
    assert {k: p.exists() for k, p in paths.items()} == dict.fromkeys(paths, True)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 2 and 'src="stability_map.png"' not in html
    assert json.loads(paths["json"].read_text())["edge"]["rate"] == pytest.approx(0.01622)
    assert "![Stability map](stability_map.png)" in paths["markdown"].read_text()
    assert paths["stability_map"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_into_a_missing_parent_is_an_advisor_error(report: FeasibilityReport,
                                                         tmp_path: Path) -> None:
    with pytest.raises(AdvisorError, match="does not exist"):
        report.write(tmp_path / "no" / "such")


def test_theory_only_report_says_so() -> None:
    est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25, stiffness_sampler=-0.75,
                          std_error=0.0, plateau=0.854)
    rep = build_report(StabilityModel(est), steps=100, start_reward=0.5)
    assert rep.edge is None and rep.feasible_fraction is None
    assert all(c is None for c in rep.panels[0].calibrated)
    assert rep.warnings[0].basis == "theory" and "No measured stability edge" in \
        rep.warnings[0].text
    # exact theory, on-policy, mu = 0: eta K < 2 (theory.md section 2)
    assert rep.panels[0].exact[0] == pytest.approx(2.0 / 0.5, rel=1e-6)


# ------------------------------------------------------------------------------------------
# refresh-interval recommendation (advisor.refresh)
# ------------------------------------------------------------------------------------------
from advisor.refresh import RefreshTiming  # noqa: E402
from advisor.refresh import recommend_refresh  # noqa: E402


def _refresh_model(std_error: float = 0.02) -> StabilityModel:
    est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0, stiffness_sampler=0.0,
                          std_error=std_error, plateau=0.9)
    return StabilityModel(est)


def test_step_seconds_known_values() -> None:
    t = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.12, generation_overhead=0.06)
    # t(s, n) = t_train + (g0 + g1 s) / (s n), t_train = 0.08, g0 = g1 = 0.06
    assert t.step_seconds(steps_per_generation=1, num_iterations=1) == pytest.approx(0.2)
    assert t.step_seconds(steps_per_generation=4, num_iterations=1) == pytest.approx(0.155)
    assert t.step_seconds(steps_per_generation=2, num_iterations=2) == pytest.approx(0.125)


def test_recommendation_is_the_argmin_of_a_brute_force_loop() -> None:
    """Oracle: recompute every candidate's wall time to 90% by hand and take the minimum."""
    model = _refresh_model()
    timing = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.15,
                           generation_overhead=0.12)
    rec = recommend_refresh(model, learning_rate=0.02, timing=timing, max_refresh=8,
                            num_iterations=(1, 2))
    best = None
    for n in (1, 2):
        for s in range(1, 8 // n + 1):
            v = model.assess({"learning_rate": 0.02, "momentum": 0.0,
                              "steps_per_generation": s, "num_iterations": n})
            if not (v.stable and v.damping_ratio >= 0.7):
                continue
            sec = math.log(10) * v.time_constant * timing.step_seconds(
                steps_per_generation=s, num_iterations=n)
            if best is None or sec < best[0] - 1e-12:
                best = (sec, s, n)
    assert (rec.steps_per_generation, rec.num_iterations) == best[1:]
    assert rec.seconds_to_90 == pytest.approx(best[0], rel=1e-9)
    assert rec.speedup > 1.5
    assert rec.grpo_kwargs()["steps_per_generation"] == best[1]
    assert "Recommended: steps_per_generation=" in rec.explain()


def test_without_measured_overhead_the_answer_is_1_with_the_numbers() -> None:
    timing = RefreshTiming(seconds_per_step=0.1, seconds_per_generation=0.04)
    rec = recommend_refresh(_refresh_model(), learning_rate=0.02, timing=timing)
    assert (rec.steps_per_generation, rec.num_iterations, rec.speedup) == (1, 1, 1.0)
    text = rec.explain()
    assert "not measured, taken as 0" in text and "the answer is 1" in text
    assert "0.1 s per on-policy step" in text and "(40%)" in text


def test_a_small_gain_is_not_worth_leaving_on_policy() -> None:
    # g0 = 0.01 of a 0.2 s step: spg = 16 saves < 5%, below min_gain = 10%
    timing = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.05,
                           generation_overhead=0.01)
    rec = recommend_refresh(_refresh_model(), learning_rate=0.02, timing=timing)
    assert rec.steps_per_generation == 1
    assert "below the 10% needed" in rec.explain()


def test_unstable_learning_rate_is_refused() -> None:
    timing = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.1)
    with pytest.raises(AdvisorError, match=r"learning_rate=5 is not stable even on-policy"):
        recommend_refresh(_refresh_model(), learning_rate=5.0, timing=timing)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"seconds_per_step": 0.1, "seconds_per_generation": 0.2},
     r"`seconds_per_generation` must be a finite number in \(0, 0.1\]"),
    ({"seconds_per_step": 0.0, "seconds_per_generation": 0.0},
     r"`seconds_per_step` must be a finite number in \(0, inf\]"),
    ({"seconds_per_step": 0.2, "seconds_per_generation": 0.1, "generation_overhead": 0.5},
     r"`generation_overhead` must be a finite number in \[0, 0.1\]"),
])
def test_bad_timing_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RefreshTiming(**kwargs)


def test_model_without_timing_is_refused() -> None:
    with pytest.raises(AdvisorError, match=r"`timing` must be given with a StabilityModel"):
        recommend_refresh(_refresh_model(), learning_rate=0.02)


def test_overhead_is_solved_from_two_batch_sizes() -> None:
    def run(b: int, g: float) -> SimpleNamespace:
        return SimpleNamespace(samples_per_step=b, seconds_per_generation=g)

    # g(B) = g0 + g1 B / B0 with g0 = 0.03, g1 = 0.05: g(64) = 0.08, g(256) = 0.23
    pilot = SimpleNamespace(seconds_per_step=0.2, seconds_per_generation=0.08,
                            samples_per_step=64, runs=[run(64, 0.08), run(256, 0.23)])
    t = RefreshTiming.from_pilot(pilot)
    assert t.generation_overhead == pytest.approx(0.03)


def test_without_a_measured_split_every_setting_uses_the_on_policy_tau() -> None:
    est = SimpleNamespace(stiffness=1.0, stiffness_current=None, stiffness_sampler=None,
                          std_error=0.02, plateau=0.9)
    with pytest.warns(AdvisorWarning, match="no current/sampler split"):
        model = StabilityModel(est)
    timing = RefreshTiming(seconds_per_step=0.1, seconds_per_generation=0.04)
    rec = recommend_refresh(model, learning_rate=0.02, timing=timing, max_refresh=4)
    taus = {c["tau_used"] for c in rec.candidates}
    assert len(taus) == 1  # the theory's pure-delay lag effect is not used for the ranking
    assert rec.steps_per_generation == 1 and "No lag effect on the rate was measured" in \
        rec.explain()


# ------------------------------------------------------------------------------------------
# found by acceptance testing (each failed before its fix)
# ------------------------------------------------------------------------------------------
def _bandit_model() -> StabilityModel:
    from advisor.bandit import BanditProblem

    est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25, stiffness_sampler=-0.75,
                          std_error=0.0, plateau=0.854)
    return StabilityModel(est, problem=BanditProblem.reference(), simulation_steps=300)


def _trial_study(momenta: list[float], states: list[str]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    dists = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 10.0, log=True),
             "momentum": optuna.distributions.FloatDistribution(0.0, 0.9)}
    for mu, state in zip(momenta, states, strict=True):
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": 0.05, "momentum": mu}, distributions=dists,
            state=optuna.trial.TrialState[state], value=0.8 if state == "COMPLETE" else None,
            user_attrs={"advisor:interrupted": True} if state == "FAIL" else {}))
    return study


def test_every_trial_is_drawn_in_the_panel_of_the_nearest_momentum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep samples momentum continuously: trials at 0.2 or 0.7 used to be drawn in no panel
    (only exact matches with a panel's momentum were), so a 30-trial report showed one point."""
    import matplotlib.axes

    momenta = [0.0, 0.2, 0.3, 0.6, 0.7, 0.85]
    study = _trial_study(momenta, ["COMPLETE"] * len(momenta))
    rep = build_report(_refresh_model(), momenta=(0.0, 0.45, 0.9), optuna_study=study,
                       steps=100, start_reward=0.5)
    drawn: list[int] = []
    original = matplotlib.axes.Axes.scatter

    def count(self: object, x: list[float], *args: object, **kwargs: object) -> object:
        drawn.append(len(x))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", count)
    rep.write(tmp_path / "rep")
    assert sum(drawn) == len(momenta)  # each trial exactly once


def test_failed_or_interrupted_trials_are_not_collapses() -> None:
    """A Ctrl-C or a crash (state FAIL) used to count as a collapse in the report."""
    rep = build_report(_refresh_model(), momenta=(0.0,), steps=100, start_reward=0.5,
                       optuna_study=_trial_study([0.0, 0.0], ["COMPLETE", "FAIL"]))
    assert rep.trials["collapsed"] == 0 and rep.trials["failed_or_interrupted"] == 1
    assert [p["state"] for p in rep.trial_points] == ["complete", "fail"]
    assert "of finished trials collapsed" not in " ".join(w.text for w in rep.warnings)
    assert "- Trials collapse rate: 0%" in rep.to_markdown()


def test_feasible_interval_of_a_float_knob_reaches_both_ends(report: FeasibilityReport) -> None:
    """Momentum was sampled at stratum midpoints, so the report said 'feasible 0.0281 - 0.872'
    for a range 0 - 0.9 in which both ends are stable at small learning rates."""
    mu = next(iv for iv in report.intervals if iv.name == "momentum")
    assert (mu.low, mu.high) == (0.0, 0.9)
    assert (mu.feasible_low, mu.feasible_high) == (0.0, 0.9)


def test_first_order_damping_ratio_prints_as_inf(report: FeasibilityReport) -> None:
    """zeta = inf (mu = 0, no oscillation) printed as '-', which reads as 'missing'."""
    rows = [line for line in report.to_markdown().splitlines() if "| monotone |" in line]
    assert rows and all("| inf | monotone |" in line for line in rows)


def test_bandit_report_does_not_ask_for_a_pilot_it_already_has() -> None:
    """For a bandit objective the theory is exact; the warning used to tell the user to run
    `grpo-advisor pilot` right after they had."""
    rep = build_report(_bandit_model(), momenta=(0.0,), steps=100, start_reward=0.5)
    text = rep.warnings[0].text
    assert rep.warnings[0].basis == "theory" and "exact for this softmax-bandit" in text
    assert "run `grpo-advisor pilot`" not in text


def test_write_into_a_file_is_an_advisor_error(report: FeasibilityReport,
                                               tmp_path: Path) -> None:
    target = tmp_path / "study.toml"
    target.write_text("name = 'x'\n")
    with pytest.raises(AdvisorError, match=r"the report folder .*study.toml' is a file\. Pass "
                       r"--output with a folder"):
        report.write(target)
    assert target.read_text() == "name = 'x'\n"


def test_write_into_a_read_only_folder_is_an_advisor_error(
        report: FeasibilityReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod cannot make a folder read-only for root (CI): refuse the first write instead
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(AdvisorError, match=r"cannot write the report to .*permission denied.*"
                       r"Pass --output with a writable folder"):
        report.write(tmp_path / "rep")


def test_recommendation_json_is_strict_and_names_the_deciding_layer() -> None:
    """zeta = inf went out as `Infinity`, which jq and browsers reject; the reasoning said
    '(calibrated edge)' for a theory-only model."""
    timing = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.1)
    rec = recommend_refresh(_refresh_model(), learning_rate=0.02, timing=timing, max_refresh=4)
    text = json.dumps(rec.to_dict(), allow_nan=False)  # raises on inf/nan
    assert json.loads(text)["candidates"][0]["damping_ratio"] is None
    assert "predicted stable (theory layer)" in rec.explain()
    with pytest.raises(AdvisorError, match=r"lower it below the edge"):
        recommend_refresh(_refresh_model(), learning_rate=5.0, timing=timing)


def test_best_trial_follows_the_study_direction() -> None:
    """The report took the largest value as the best even for a study that minimizes."""
    study = optuna.create_study(direction="minimize")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    for lr, value in ((0.01, 0.2), (0.1, 0.9)):
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": lr},
                                                  distributions=dist, value=value))
    rep = build_report(_refresh_model(), momenta=(0.0,), steps=100, start_reward=0.5,
                       optuna_study=study)
    assert rep.trials["best_value"] == 0.2 and rep.trials["best_params"] == "learning_rate=0.01"

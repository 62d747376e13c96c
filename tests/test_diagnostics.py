from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from advisor.diagnostics import MODES
from advisor.diagnostics import diagnose
from advisor.diagnostics import diagnose_main
from advisor.diagnostics import load_history
from advisor.exceptions import InsufficientDataError


DATA = Path(__file__).parent / "data"


def _load(name):
    return json.loads((DATA / f"history_{name}.json").read_text())


def _config(run):
    return run["knobs"]  # the recorded run's effective knobs (tests/data/make_histories.py)


# ------------------------------------------------------------- real recorded runs
def test_real_healthy_run_has_no_finding():
    run = _load("healthy")
    report = diagnose(run["log_history"], config=_config(run), start_reward=run["base_success"])
    assert report.healthy, report.to_table()
    assert not report.label.unstable
    assert "reward_hacking" in report.not_checked
    assert "eval_metric" in report.not_checked["reward_hacking"]


def test_real_collapse_is_dynamical_instability():
    run = _load("collapse")  # AdamW at 10x the healthy learning rate
    report = diagnose(run["log_history"], config=_config(run), start_reward=run["base_success"])
    top = report.findings[0]
    assert top.mode == "dynamical_instability"
    assert top.evidence["reason_declined_below_start"] == 1.0
    assert top.evidence["tail_mean"] < top.evidence["threshold"]
    # it is flagged 10 steps in (the shortest window of the rule) and a 3x lower lr advised
    assert top.steps[1] == 10
    assert top.config_changes["learning_rate"] == pytest.approx(1e-3)
    # the zero-advantage groups of a collapsed policy are its consequence, not a finding
    assert "advantage_degeneracy" not in report.modes()


def test_real_g2_run_is_advantage_degeneracy_matching_prediction():
    run = _load("degenerate")
    report = diagnose(run["log_history"], config=_config(run), start_reward=run["base_success"])
    assert report.modes() == ["advantage_degeneracy"]
    ev = report.findings[0].evidence
    assert ev["frac_reward_zero_std"] >= 0.5
    # p^2 + (1-p)^2 at the logged success rate predicts the zero-std fraction: 20 steps x 64
    # groups give a standard error of about sqrt(0.2/1280) = 0.013; allow 3 of them plus the
    # spread of p across prompts
    assert ev["predicted_p^G+(1-p)^G"] == pytest.approx(ev["frac_reward_zero_std"], abs=0.08)
    changes = report.findings[0].config_changes
    p = ev["reward"]
    g = changes["num_generations"]
    assert g > 2 and p**g + (1 - p) ** g <= 0.25
    assert changes["per_device_train_batch_size"] == 128 * g // 2  # same prompts per step


def test_real_entropy_run_is_policy_concentration():
    run = _load("entropy")
    report = diagnose(run["log_history"], config=_config(run), start_reward=run["base_success"])
    assert "policy_concentration" in report.modes()
    f = next(f for f in report.findings if f.mode == "policy_concentration")
    assert f.evidence["entropy_end"] < 0.3 * f.evidence["entropy_start"]
    assert f.evidence["reward_end"] <= 0.75
    assert f.config_changes == {"learning_rate": 7.5e-4, "beta": 0.04}
    assert not report.label.unstable  # concentrated, not collapsed


def test_file_formats_and_sources_agree(tmp_path):
    run = _load("entropy")
    hist = run["log_history"]
    expected = diagnose(hist).to_dict()
    (tmp_path / "h.jsonl").write_text("\n".join(json.dumps(r) for r in hist))
    keys = sorted({k for r in hist for k in r})
    with open(tmp_path / "h.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(hist)
    sources = [DATA / "history_entropy.json", str(tmp_path / "h.jsonl"), tmp_path / "h.csv",
               SimpleNamespace(log_history=hist), SimpleNamespace(state=SimpleNamespace(
                   log_history=hist)), SimpleNamespace(history=hist)]
    for source in sources:
        assert diagnose(source).to_dict() == expected, source


# ------------------------------------------------------------- hand-made edge cases
def _rising(n=150, p0=0.3, p1=0.9, tau=20.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    r = p1 - (p1 - p0) * np.exp(-t / tau) + rng.normal(0, 0.02, n)
    return [{"step": int(s), "reward": float(x), "grad_norm": 0.4 + 0.02 * rng.random(),
             "entropy": 1.0 - 0.4 * (1 - math.exp(-s / 50)), "learning_rate": 0.01}
            for s, x in zip(t, r, strict=True)]


def test_noise_collapse_spike_entropy_jump_reward_drop():
    hist = _rising()
    hist[99]["grad_norm"] = 12.0  # 30x the running median at step 100
    for row in hist[101:]:
        row["entropy"] += 1.0
        row["reward"] = 0.05
    report = diagnose(hist)
    f = next(f for f in report.findings if f.mode == "noise_collapse")
    assert f.steps[0] == 100 and f.confidence == 0.9
    assert f.evidence["grad_norm"] >= f.evidence["spike_threshold"]
    assert f.evidence["reward_drop"] > 0.5
    assert f.config_changes["learning_rate"] == pytest.approx(0.005)


def test_oscillation_recovers_damping_ratio():
    rng = np.random.default_rng(1)
    t = np.arange(150)
    zeta, w = 0.15, 0.12
    r = 0.7 - 0.12 * np.exp(-zeta * w * t) * np.cos(w * math.sqrt(1 - zeta**2) * t)
    report = diagnose({"reward": (r + rng.normal(0, 0.02, 150)).tolist()}, start_reward=0.58)
    f = report.findings[0]
    assert f.mode == "dynamical_instability" and "oscillates" in f.recommendation
    # noise 0.02 on an amplitude of 0.12: the fitted damping ratio within +-0.05 of 0.15
    assert f.evidence["damping_ratio"] == pytest.approx(zeta, abs=0.05)


def test_too_slow_recommends_higher_learning_rate():
    rng = np.random.default_rng(2)
    t = np.arange(1, 151)
    r = 0.3 + 0.6 * (1 - np.exp(-t / 400)) + rng.normal(0, 0.02, 150)
    report = diagnose({"reward": r.tolist(), "learning_rate": [1e-4] * 150})
    f = report.findings[0]
    assert report.modes() == ["too_slow"]
    assert f.evidence["time_constant"] > f.evidence["horizon_steps"] == 150
    assert f.config_changes["learning_rate"] == pytest.approx(3e-4)  # capped at 3x
    # the same curve with a 1000-step horizon is not too slow
    assert diagnose({"reward": r.tolist()}, total_steps=1000).healthy


def test_reward_hacking_needs_eval_and_compares_gains():
    hist = _rising()
    for i, row in enumerate(hist):
        if i % 10 == 9:
            row["eval_reward"] = 0.30 + 0.01 * (i % 20 == 19)
    report = diagnose(hist, eval_metric="eval_reward")
    f = report.findings[0]
    assert f.mode == "reward_hacking"
    assert f.evidence["train_gain"] > 0.8 and abs(f.evidence["eval_gain"]) < 0.05
    honest = {s: 0.3 + 0.6 * (1 - math.exp(-s / 20)) for s in range(10, 151, 10)}
    assert diagnose(hist, eval_metric=honest).healthy
    with pytest.raises(ValueError, match="Logged eval keys: \\['eval_reward'\\]"):
        diagnose(hist, eval_metric="eval_accuracy")


def test_stability_model_margin_enters_the_finding():
    # duck-typed StabilityModel: only `assess(params)` is used
    class Model:
        def assess(self, params):
            return SimpleNamespace(margin=math.log(2e-4 / params["learning_rate"]),
                                   max_learning_rate=2e-4)

    run = _load("collapse")
    report = diagnose(run["log_history"], model=Model(), config=_config(run),
                      start_reward=run["base_success"])
    f = report.findings[0]
    assert f.evidence["model_margin"] == pytest.approx(math.log(2e-4 / 3e-3))
    assert "model predicted this" in f.recommendation
    assert f.config_changes["learning_rate"] == pytest.approx(1e-4)  # half the model's edge


def test_modes_listed_once():
    assert len(set(MODES)) == 6


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("source", "exc", "match"),
    [
        ([], InsufficientDataError, "at least one logged row"),
        ([{"step": 1, "loss": 0.1}], InsufficientDataError, "reward metric 'reward'"),
        ([{"step": 1, "reward": 0.3}, {"step": 2, "reward": math.nan}], ValueError,
         "must be finite.*nan_policy='omit'"),
        ("/nonexistent/log.json", FileNotFoundError, "existing log file"),
        ("log.txt", FileNotFoundError, "existing log file"),
        (42, TypeError, "list of dicts"),
    ],
)
def test_bad_sources(source, exc, match):
    with pytest.raises(exc, match=match):
        diagnose(source)


def test_unreadable_and_unsupported_files(tmp_path):
    bad = tmp_path / "log.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="readable .json log"):
        diagnose(bad)
    other = tmp_path / "log.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match=r"\.json, \.jsonl or \.csv"):
        diagnose(other)
    with pytest.raises(ValueError, match="nan_policy"):
        diagnose([{"step": 1, "reward": 0.1}], nan_policy="ignore")


def test_nan_reward_omitted_is_reported_as_divergence():
    hist = _rising(60)
    hist[40]["reward"] = math.nan
    report = diagnose(hist, nan_policy="omit")
    assert report.n_dropped_nonfinite == 1
    f = report.findings[0]
    assert f.mode == "dynamical_instability" and f.evidence["reason_nonfinite"] == 1.0
    assert f.steps[1] == 41


def test_load_history_trainer_state_json(tmp_path):
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 2, "log_history": [{"step": 1, "reward": 0.1}]}))
    assert load_history(path) == [{"step": 1, "reward": 0.1}]


# ------------------------------------------------------------- entry point
def test_diagnose_main_prints_table_and_json(capsys):
    assert diagnose_main([str(DATA / "history_healthy.json")]) == 0
    out = capsys.readouterr().out
    table, _, js = out.partition("\n{")
    assert "no failure mode found" in table
    assert json.loads("{" + js)["findings"] == []
    assert diagnose_main(str(DATA / "history_degenerate.json")) == 1
    assert "advantage_degeneracy" in capsys.readouterr().out
    assert diagnose_main(["/nonexistent.json"]) == 2
    assert "existing log file" in capsys.readouterr().err


# ------------------------------------------------------------- callback (no training)
def test_callback_on_log_stops_and_warns(caplog):
    pytest.importorskip("transformers")
    from transformers import TrainerControl
    from transformers import TrainerState

    from advisor.diagnostics import AdvisorCallback

    hist = _rising(80)
    for row in hist[50:]:
        row["reward"] = 0.02
    cb = AdvisorCallback(stop_on_collapse=True, start_reward=0.3, diagnose_every=0)
    state, control = TrainerState(), TrainerControl()
    with caplog.at_level(logging.WARNING, logger="trl.advisor"):
        for row in hist:
            state.global_step = row["step"]
            logs = {k: v for k, v in row.items() if k != "step"}
            state.log_history.append({**logs, "step": row["step"]})
            cb.on_log(None, state, control, logs=logs)
            if control.should_training_stop:
                break
    assert cb.stopped_at is not None and 51 <= cb.stopped_at <= 60
    assert "instability at step" in caplog.text
    last = state.log_history[-1]
    assert last["advisor/unstable"] == 1.0
    # last refit at step 50 (fit_every=10), before the collapse: the plateau of the rise to
    # 0.9 from 50 points at noise 0.02, 2.5 time constants in, is known to about +-0.03
    assert last["advisor/plateau"] == pytest.approx(0.9, abs=0.07)


# ------------------------------------------------------------- callback on real runs
def _train(overrides, callback, tmp_path):
    trl = pytest.importorskip("trl")
    import torch

    from advisor.tasks import builtin_task
    from advisor.tasks import default_config

    torch.set_num_threads(1)
    task = builtin_task()
    trainer = trl.GRPOTrainer(model=task.model_path, processing_class=task.tokenizer,
                              reward_funcs=list(task.reward_funcs),
                              args=default_config(str(tmp_path), **overrides),
                              train_dataset=task.train_dataset, callbacks=[callback])
    trainer.train()
    return task, trainer.state.log_history


@pytest.mark.slow
def test_callback_stops_real_collapse_within_10_steps(tmp_path):
    pytest.importorskip("trl")
    from advisor.diagnostics import AdvisorCallback
    from advisor.tasks import builtin_task

    start = builtin_task().base_success
    cb = AdvisorCallback(stop_on_collapse=True, start_reward=start)
    _, hist = _train(dict(learning_rate=3e-3, max_steps=60, per_device_train_batch_size=128),
                     cb, tmp_path)
    rewards = [(r["step"], r["reward"]) for r in hist if "reward" in r]
    # collapse: first step whose 3-step mean reward is below half the start
    means = [(s, np.mean([x for t, x in rewards if s - 3 < t <= s])) for s, _ in rewards]
    collapse = next(s for s, m in means if m < 0.5 * start)
    assert cb.stopped_at is not None
    assert cb.stopped_at - collapse <= 10
    assert rewards[-1][0] == cb.stopped_at  # training stopped there


@pytest.mark.slow
def test_callback_never_stops_healthy_run(tmp_path):
    pytest.importorskip("trl")
    from advisor.diagnostics import AdvisorCallback
    from advisor.tasks import builtin_task

    cb = AdvisorCallback(stop_on_collapse=True, start_reward=builtin_task().base_success)
    _, hist = _train(dict(learning_rate=3e-4, max_steps=120, beta=0.04,
                          per_device_train_batch_size=128), cb, tmp_path)
    assert cb.stopped_at is None
    assert max(r["step"] for r in hist) == 120
    assert any("advisor/predicted_reward" in r for r in hist)


def test_example_script_smoke():
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, str(root / "examples" / "diagnose_log.py")],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    assert "policy_concentration" in out.stdout


def test_pilot_result_like_sources():
    run = _load("healthy")
    one = SimpleNamespace(histories={"scan-0": run["log_history"]}, start_reward=0.3)
    report = diagnose(one)
    assert report.healthy and report.start_reward == 0.3
    two = SimpleNamespace(histories={"a": [], "b": []})
    with pytest.raises(TypeError, match="histories\\[name\\] \\(names: \\['a', 'b'\\]\\)"):
        diagnose(two)


# ------------------------------------------------------------- user-acceptance regressions
def _collapsing_history() -> dict:
    return {"reward": np.r_[np.linspace(0.3, 0.8, 60), np.full(60, 0.2)]}


def test_dict_config_reads_like_the_model_does() -> None:
    # before: StabilityModel.assess({"learning_rate": 20}) read the dict as SGD (the model's
    # optimizer) but diagnose(config={"learning_rate": 20}) built TRL's default AdamW knobs and
    # failed with "`optimizer` must be 'sgd' ... got 'adamw'"
    from advisor.stability import StabilityModel

    model = StabilityModel(SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
                                           stiffness_sampler=-0.75, std_error=0.01))
    report = diagnose(_collapsing_history(), model=model, config={"learning_rate": 20.0})
    finding = report.findings[0]
    assert finding.mode == "dynamical_instability"
    assert "the model predicted this" in finding.recommendation
    assert finding.config_changes["learning_rate"] < 20.0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"total_steps": 0}, ValueError, "`total_steps` must be an integer >= 1, got 0"),
    ({"max_reward": float("nan")}, ValueError, "`max_reward` must be a finite number"),
    ({"model": "m"}, TypeError, "`model` must be a StabilityModel"),
])
def test_diagnose_rejects_bad_settings(kwargs, error, match) -> None:
    # before: total_steps=0 raised ZeroDivisionError, max_reward=nan was used silently and a
    # wrong model type raised AttributeError
    with pytest.raises(error, match=match):
        diagnose(_collapsing_history(), **kwargs)

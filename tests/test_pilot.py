from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from advisor import pilot
from advisor.exceptions import AdvisorWarning
from advisor.pilot import PilotResult
from advisor.pilot import PilotRun
from advisor.pilot import RewardFunctionError
from advisor.pilot import run_pilot


datasets = pytest.importorskip("datasets")


def _config(**overrides):
    """A duck-typed GRPOConfig: the checks before training read only these fields."""
    base = dict(learning_rate=1e-3, optim="adamw_torch", optim_args=None, adam_beta1=0.9,
                steps_per_generation=1, generation_batch_size=None, num_iterations=1,
                gradient_accumulation_steps=1, num_generations=8,
                per_device_train_batch_size=64, max_steps=100, world_size=1)
    base.update(overrides)
    return SimpleNamespace(**base)


def _dataset():
    return datasets.Dataset.from_dict({"prompt": ["1+1=", "2+2="], "answer": [2, 4]})


# ------------------------------------------------------------------------------------------
# a fake trainer: exact heavy-ball-free relaxation at rate lr*K, collapse above a known edge
# ------------------------------------------------------------------------------------------
K_TRUE, EDGE_LR, P0, PSTAR = 120.0, 1.3e-3, 0.3, 0.9
G0, G1, T_TRAIN = 3e-4, 2e-4, 1e-3  # generate call g(s) = G0 + G1 s; step without generation


def _fake_train(spec, ctx):
    """Reward relaxes as PSTAR - (PSTAR - P0)(1 - lr K)^t; above EDGE_LR it declines."""
    rng = np.random.default_rng(spec["seed"] + int(spec["learning_rate"] * 1e7))
    t = np.arange(spec["steps"])
    lr = spec["learning_rate"]
    # the edge grows as (batch)^0.5 and shrinks as (refresh interval)^-0.25
    edge = EDGE_LR * (spec["samples_per_step"] / 64) ** 0.5 * spec.get("refresh", 1) ** -0.25
    if lr <= edge:
        mean = PSTAR - (PSTAR - P0) * (1 - lr * K_TRUE) ** t
    else:
        mean = np.maximum(P0 - 0.02 * t, 0.0)
    rewards = np.clip(mean + 0.01 * rng.standard_normal(t.size), 0, 1)
    stop = spec["steps"] if lr <= edge or spec["purpose"] == "stiffness" \
        else min(35, spec["steps"])
    rows = [{"step": i + 1, "reward": float(r), "loss": 0.0, "grad_norm": 1.0,
             "entropy": 0.5} for i, r in enumerate(rewards[:stop])]
    label = pilot.label_run(rows, start_reward=ctx["start_reward"])
    run = PilotRun(name=spec["name"], purpose=spec["purpose"], learning_rate=lr,
                   seed=spec["seed"], samples_per_step=spec["samples_per_step"],
                   target_steps=spec["steps"], steps_done=stop, unstable=label.unstable,
                   reason=label.reason, unstable_step=label.step, error=None, seconds=0.01,
                   seconds_per_step=T_TRAIN + G0 + G1,
                   seconds_per_generation=G0 + G1 * spec.get("refresh", 1),
                   seconds_per_train_step=T_TRAIN,
                   rewards=tuple(float(r) for r in rewards[:stop]),
                   refresh_interval=spec.get("refresh", 1))
    return run, rows


@pytest.fixture
def fake_trainer(monkeypatch):
    calls = []

    def fake(spec, ctx):
        calls.append(spec)
        return _fake_train(spec, ctx)

    monkeypatch.setattr(pilot._runner, "_train_once", fake)
    return calls


def _run(tmp_path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdvisorWarning)
        return run_pilot("unused-model-path", [lambda p, c, **k: [0.0] * len(c)], _dataset(),
                         _config(**kw.pop("cfg", {})), output_dir=tmp_path / "pilot",
                         progress=False, **kw)


def test_fake_pilot_recovers_stiffness_and_brackets_edge(tmp_path, fake_trainer):
    res = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=60,
               scan_steps=40)
    # noise 0.01 per step on a 0.6 rise: the pinned fit recovers K within 10%
    assert res.stiffness.stiffness == pytest.approx(K_TRUE, rel=0.1), "stiffness"
    assert math.isfinite(res.stiffness.std_error) and res.stiffness.std_error > 0
    low, point, high = res.edge_learning_rate
    assert low <= EDGE_LR < high, "edge bracket must contain the true edge"
    # 2 bisections of a x4 ladder leave a bracket of x sqrt(2)
    assert high / low == pytest.approx(math.sqrt(2), rel=1e-9)
    assert res.edge.low <= res.edge.rate < res.edge.high
    # the unstable end came from short runs only (an upper bound): the point is the stable end
    assert point == low
    assert res.edge.rate == pytest.approx(point * res.stiffness.stiffness, rel=1e-12)
    assert res.optimizer == "adamw" and res.momentum == 0.0 and res.samples_per_step == 64
    # every seed confirmed the stable end of the bracket
    assert {r.seed for r in res.runs if r.learning_rate == low and not r.unstable} == {0, 1}


def test_late_collapse_moves_the_confirmed_end_down(tmp_path, monkeypatch):
    # seed 1 collapses after step 60 above EDGE_LR / 1.5: only the full-horizon runs see it
    def late(spec, ctx):
        run, rows = _fake_train(spec, ctx)
        if spec["seed"] == 1 and spec["steps"] > 60 and spec["learning_rate"] > EDGE_LR / 1.5:
            rows = [dict(r, reward=0.0) if r["step"] > 60 else r for r in rows]
            label = pilot.label_run(rows, start_reward=ctx["start_reward"])
            run = dataclasses.replace(run, unstable=label.unstable, reason=label.reason,
                                      rewards=tuple(r["reward"] for r in rows))
        return run, rows

    monkeypatch.setattr(pilot._runner, "_train_once", late)
    res = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=100,
               scan_steps=40)
    low, point, high = res.edge_learning_rate
    assert low <= EDGE_LR / 1.5 < high
    assert point == pytest.approx(math.sqrt(low * high), rel=1e-12)  # full-horizon bracket
    assert res.edge.low < res.edge.rate < res.edge.high
    assert res.edge.horizon_steps == 100


def test_fake_pilot_spends_budget_near_the_edge(tmp_path, fake_trainer):
    res = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=60,
               scan_steps=40)
    collapsed = [r for r in res.runs if r.unstable]
    assert collapsed and all(r.steps_done < 60 for r in collapsed)  # stopped early
    assert res.cost_steps == sum(r.steps_done for r in res.runs)
    assert res.cost_steps <= res.budget_steps and not res.over_budget


@pytest.mark.parametrize("planned", [60, 100, 150])
def test_default_budget_is_respected(tmp_path, fake_trainer, planned):
    res = _run(tmp_path, planned_steps=planned)
    assert res.budget_steps == 3 * planned
    assert res.cost_steps == sum(r.steps_done for r in res.runs) <= res.budget_steps
    # the full horizon fits the default budget (very short plans: nearly)
    assert res.horizon_steps == planned if planned >= 100 else res.horizon_steps >= 0.8 * planned
    # every seed confirmed the stable end over the full horizon
    full = [r for r in res.runs if r.purpose == "scan" and r.target_steps == res.horizon_steps]
    assert {r.seed for r in full if r.learning_rate == res.edge_learning_rate[0]
            and not r.unstable} == {0, 1}


def test_late_collapse_under_a_tight_budget_stays_within_it(tmp_path, monkeypatch):
    # every confirmation at lr > EDGE_LR / 1.5 fails late for seed 1; the budget holds only
    # one confirmation level, so the stable end moves down unconfirmed (with a warning)
    def late(spec, ctx):
        run, rows = _fake_train(spec, ctx)
        if spec["seed"] == 1 and spec["steps"] > 60 and spec["learning_rate"] > EDGE_LR / 1.5:
            rows = [dict(r, reward=0.0) if r["step"] > 60 else r for r in rows]
            label = pilot.label_run(rows, start_reward=ctx["start_reward"])
            run = dataclasses.replace(run, unstable=label.unstable, reason=label.reason,
                                      rewards=tuple(r["reward"] for r in rows),
                                      steps_done=len(rows))
        return run, rows

    monkeypatch.setattr(pilot._runner, "_train_once", late)
    with pytest.warns(AdvisorWarning, match="unconfirmed"):
        res = run_pilot("unused", [lambda p, c, **k: [0.0] * len(c)], _dataset(), _config(),
                        output_dir=tmp_path / "pilot", progress=False, planned_steps=100)
    assert res.cost_steps <= res.budget_steps == 300
    low, _, high = res.edge_learning_rate
    assert low <= EDGE_LR / 1.5 < high


def test_timing_recovers_train_step_and_generate_overhead(tmp_path, fake_trainer):
    res = _run(tmp_path, planned_steps=100)
    assert res.seconds_per_step == pytest.approx(T_TRAIN + G0 + G1, rel=1e-9)
    assert res.seconds_per_generation == pytest.approx(G0 + G1, rel=1e-9)
    assert res.seconds_per_train_step == pytest.approx(T_TRAIN, rel=1e-9)
    assert res.generation_overhead == pytest.approx(G0, rel=1e-6)
    timed = [r for r in res.runs if r.purpose == "timing"]
    assert len(timed) == 1 and timed[0].refresh_interval == 4
    timing = res.timing()
    assert timing.generation_overhead == pytest.approx(G0, rel=1e-6)
    # t(s=4, n=1) = t_train + (g0 + 4 g1) / 4 from the refresh wall-time model
    assert timing.step_seconds(steps_per_generation=4, num_iterations=1) == pytest.approx(
        T_TRAIN + (G0 + 4 * G1) / 4, rel=1e-6)


def test_stiffness_comes_from_stable_scan_curves(tmp_path, fake_trainer):
    res = _run(tmp_path, planned_steps=100)
    low = res.edge_learning_rate[0]
    lrs = set(res.stiffness.learning_rates)
    assert len(lrs) >= 2 and max(lrs) <= low * 1.0001  # linearity checked, none above lo
    assert res.stiffness.stiffness == pytest.approx(K_TRUE, rel=0.1)
    assert res.linear


def test_pilot_resumes_without_rerunning(tmp_path, fake_trainer):
    first = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=60,
               scan_steps=40)
    n_calls = len(fake_trainer)
    second = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=60,
               scan_steps=40)
    assert len(fake_trainer) == n_calls  # every run was read back from disk
    assert second.edge == first.edge
    assert second.stiffness.stiffness == pytest.approx(first.stiffness.stiffness, rel=1e-12)


def test_pilot_sgd_heavy_ball_units(tmp_path, fake_trainer):
    # with heavy-ball mu the edge in x = lr K/(1 - mu) carries the 1/(1 - mu) factor
    res = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=60,
               scan_steps=40, cfg=dict(optim="sgd", optim_args="momentum=0.5"))
    assert res.optimizer == "sgd" and res.momentum == 0.5
    assert res.edge.rate == pytest.approx(
        res.edge_learning_rate[1] * res.stiffness.stiffness / 0.5, rel=1e-12)


def test_save_load_roundtrip(tmp_path, fake_trainer):
    res = _run(tmp_path, planned_steps=100, budget_steps=1200, horizon_steps=60,
               scan_steps=40)
    res.save(tmp_path / "saved")
    back = PilotResult.load(tmp_path / "saved")
    assert back.edge == res.edge and back.runs == res.runs
    for key in ("cost_steps", "budget_steps", "seconds_per_train_step", "generation_overhead"):
        assert getattr(back, key) == getattr(res, key), key
    assert back.generation_overhead == pytest.approx(G0, rel=1e-6)
    assert back.stiffness.stiffness == pytest.approx(res.stiffness.stiffness, rel=1e-12)
    name = res.runs[0].name
    assert back.history(name)["reward"].tolist() == pytest.approx(
        [row["reward"] for row in res.histories[name]])


def test_second_points_measure_the_exponents(tmp_path, fake_trainer):
    res = _run(tmp_path, planned_steps=60, budget_steps=5000, horizon_steps=60, scan_steps=40,
               n_refine=4, batch_factor=4, refresh_interval=4)
    # 4 bisections of a x4 ladder: each edge within x1.09, so each exponent within
    # log(1.09^2)/log(4) = 0.12 of the truth (0.5 and -0.25 in the fake)
    assert res.edge.batch_exponent == pytest.approx(0.5, abs=0.12)
    assert res.edge.refresh_exponent == pytest.approx(-0.25, abs=0.12)
    # a stiffness run only when the scan curves lack a second learning rate
    assert {"scan", "batch", "refresh", "timing"} <= {r.purpose for r in res.runs} <= {
        "scan", "stiffness", "batch", "refresh", "timing"}
    assert {r.samples_per_step for r in res.runs if r.purpose == "batch"} == {256}
    assert {r.refresh_interval for r in res.runs if r.purpose == "refresh"} == {4}


def test_carried_rewards():
    rows = [{"step": 1, "reward": 0.2}, {"step": 2}, {"step": 3, "reward": 0.5}, {"step": 4}]
    assert pilot._carried_rewards(rows) == [0.2, 0.2, 0.5, 0.5]


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(cfg=dict(per_device_train_batch_size=12)), "multiple of num_generations"),
        (dict(budget_steps=50), r"budget_steps.*at least .* = 116 for a scan, got 50"),
        (dict(seeds=(0,)), "at least 2 distinct seeds"),
        (dict(planned_steps=0), "planned_steps"),
        (dict(batch_factor=1), "batch_factor"),
        (dict(refresh_interval=1), "refresh_interval"),
    ],
)
def test_bad_input(tmp_path, fake_trainer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _run(tmp_path, **kwargs)


def test_dataset_without_prompt_column(tmp_path):
    ds = datasets.Dataset.from_dict({"text": ["1+1="]})
    with pytest.raises(ValueError, match="'prompt' column.*rename_column"):
        run_pilot("m", [], ds, _config(), output_dir=tmp_path)


def test_budget_too_small_for_the_scan(tmp_path, monkeypatch):
    # everything collapses: the ladder walks down until the budget is gone
    def always_collapse(spec, ctx):
        return _fake_train({**spec, "learning_rate": 1.0}, ctx)

    monkeypatch.setattr(pilot._runner, "_train_once", always_collapse)
    with pytest.raises(ValueError, match="budget_steps.*must cover a scan"):
        _run(tmp_path, planned_steps=60, budget_steps=140, horizon_steps=30)


@pytest.mark.parametrize("bad", [None, float("nan"), "1.0"])
def test_reward_function_returning_none_or_nan(bad):
    def reward(prompts, completions, **kwargs):
        return [1.0] + [bad] * (len(completions) - 1)

    wrapped = pilot._wrap_reward(reward)
    assert wrapped.__name__ == "reward"  # TRL logs rewards/<name>/mean
    with pytest.raises(RewardFunctionError, match="finite float for every completion.*0.0"):
        wrapped(["1+1=", "1+1="], ["2", "x"])


def test_reward_function_wrong_length():
    wrapped = pilot._wrap_reward(lambda prompts, completions, **k: [1.0])
    with pytest.raises(RewardFunctionError, match="one float per completion"):
        wrapped(["a", "b"], ["1", "2"])


def test_import_is_light():
    code = "import sys, advisor.pilot; print('torch' in sys.modules, 'trl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


# ------------------------------------------------------------------------------------------
# real TRL runs on the built-in task (slow; run in CI)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
    pytest.importorskip("trl")
    from advisor.tasks import builtin_task

    return builtin_task()


@pytest.mark.slow
def test_real_pilot_end_to_end(task, tmp_path):
    from advisor.tasks import default_config

    cfg = default_config(str(tmp_path / "t"), learning_rate=3e-4, max_steps=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_pilot(task.model_path, list(task.reward_funcs), task.train_dataset, cfg,
                        processing_class=task.tokenizer, output_dir=tmp_path / "pilot",
                        progress=False)
    assert res.stiffness.stiffness > 0
    assert math.isfinite(res.stiffness.std_error)
    assert res.edge.low <= res.edge.rate < res.edge.high
    assert res.edge_learning_rate[0] <= res.edge_learning_rate[1] < res.edge_learning_rate[2]
    assert res.cost_steps > 0 and res.cost_seconds > 0 and res.seconds_per_step > 0
    assert res.seconds_per_generation is not None and res.seconds_per_generation > 0
    assert res.budget_steps == 240 and res.cost_steps <= res.budget_steps
    assert res.seconds_per_train_step is not None and res.seconds_per_train_step > 0
    assert res.generation_overhead is not None and 0 <= res.generation_overhead \
        <= res.seconds_per_generation
    assert res.timing().generation_overhead == res.generation_overhead
    assert len(set(res.stiffness.learning_rates)) >= 2  # linearity checked
    name = next(r.name for r in res.runs if not r.unstable)
    hist = res.history(name)
    for key in ("reward", "reward_std", "frac_reward_zero_std", "entropy", "grad_norm",
                "completions/mean_length", "clip_ratio/region_mean"):
        assert key in hist.columns, key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = res.model()
    assert float(model.max_learning_rate(method="calibrated")) == pytest.approx(
        res.edge_learning_rate[1], rel=1e-6)


@pytest.mark.slow
def test_real_reward_returning_none_is_reported(task, tmp_path):
    from advisor.tasks import default_config

    def none_reward(prompts, completions, **kwargs):
        return [None] * len(completions)

    cfg = default_config(str(tmp_path / "t"), max_steps=40)
    with pytest.raises(RewardFunctionError, match="finite float"):
        run_pilot(task.model_path, [none_reward], task.train_dataset, cfg,
                  processing_class=task.tokenizer, output_dir=tmp_path / "p", progress=False)


@pytest.mark.slow
def test_make_objective_reports_and_prunes(task, tmp_path):
    optuna = pytest.importorskip("optuna")
    from advisor.pilot import make_objective
    from advisor.tasks import default_config

    cfg = default_config(str(tmp_path / "t"), max_steps=25)
    objective = make_objective(task.model_path, list(task.reward_funcs), task.train_dataset, cfg,
                               processing_class=task.tokenizer, output_dir=tmp_path / "trials",
                               search_space=lambda t: {
                                   "learning_rate": t.suggest_float("learning_rate", 1e-4, 1e-3,
                                                                    log=True)})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == list(range(1, 26))
    assert 0.0 <= trial.value <= 1.0
    assert trial.user_attrs["advisor:collapsed"] in (True, False)
    health = trial.user_attrs["advisor:health"]
    assert health["step"] == list(range(1, 26)) and len(health["grad_norm"]) == 25
    assert all(h is not None for h in health["entropy"])
    assert trial.user_attrs["advisor:unstable"] in (True, False)
    assert trial.user_attrs["advisor:learning_rate"] == trial.params["learning_rate"]

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    pruned = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    pruned.optimize(objective, n_trials=1)
    assert pruned.trials[0].state == optuna.trial.TrialState.PRUNED
    assert len(pruned.trials[0].intermediate_values) == 1


@pytest.mark.slow
def test_make_objective_maps_momentum(task, tmp_path):
    optuna = pytest.importorskip("optuna")
    from advisor.pilot import make_objective
    from advisor.tasks import default_config

    cfg = default_config(str(tmp_path / "t"), max_steps=5)
    seen = {}

    def space(trial):
        seen["params"] = {"learning_rate": trial.suggest_float("learning_rate", 0.01, 0.02),
                          "momentum": trial.suggest_float("momentum", 0.0, 0.5),
                          "max_grad_norm": 0.0}
        return seen["params"]

    objective = make_objective(task.model_path, list(task.reward_funcs), task.train_dataset,
                               cfg, processing_class=task.tokenizer, search_space=space,
                               output_dir=tmp_path / "trials")
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert set(study.trials[0].params) == {"learning_rate", "momentum"}


@pytest.mark.slow
def test_example_script_runs(task, tmp_path):
    import os
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "pilot_builtin.py"
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}
    out = subprocess.run([sys.executable, str(script), "--planned-steps", "40", "--output-dir",
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "edge: stable at lr" in out.stdout and (tmp_path / "result" / "pilot.json").exists()

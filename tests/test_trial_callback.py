"""`advisor.pilot.trial_callback`: a user's own GRPOTrainer objective reports to Optuna."""

from __future__ import annotations

import math

import optuna
import pytest

from advisor import TrajectoryPruner
from advisor.pilot._trial_callback import _TrialReporter


def _study(pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="maximize", pruner=pruner)


def test_reports_carried_forward_rewards_and_finishes_with_attrs() -> None:
    study = _study()
    trial = study.ask()
    rep = _TrialReporter(trial)
    for step in range(1, 41):
        # reward logged only every 4th step (a generation step), loss every step
        logs = {"loss": 0.1, "grad_norm": 1.0}
        if step % 4 == 1:
            logs["reward"] = 0.3 + 0.01 * step
        assert rep.log_row(step, logs) is False
    assert rep.log_row(41, {"eval_loss": 1.0}) is False  # not a training row: ignored
    rep.finish()
    frozen = study.trials[0]
    assert sorted(frozen.intermediate_values) == list(range(1, 41))
    assert frozen.intermediate_values[4] == pytest.approx(0.31)  # carried from step 1
    assert rep.value(4) == pytest.approx(0.3 + 0.01 * 37)
    attrs = frozen.user_attrs
    assert attrs["advisor:collapsed"] is False
    assert attrs["advisor:health"]["step"] == list(range(1, 41))
    assert attrs["advisor:unstable"] in (True, False)


def test_a_collapse_stops_training_and_is_recorded() -> None:
    study = _study()
    trial = study.ask()
    rep = _TrialReporter(trial)
    stops = [rep.log_row(s, {"loss": 0.1, "reward": 0.6 if s < 40 else 0.05})
             for s in range(1, 80)]
    assert any(stops)
    first = stops.index(True) + 1
    assert not any(stops[first:])  # latched: it fires once
    rep.finish()
    attrs = study.trials[0].user_attrs
    assert attrs["advisor:collapsed"] is True
    assert attrs["advisor:collapse_step"] == first
    assert attrs["advisor:collapse_reason"] in ("drop_from_peak", "declined_below_start")


def test_the_pruner_prunes_through_the_callback() -> None:
    study = _study(TrajectoryPruner(n_warmup_steps=10, n_steps=100))
    good = {s: 0.9 - 0.6 * math.exp(-0.1 * s) for s in range(101)}
    study.add_trial(optuna.create_trial(value=0.9, intermediate_values=good))
    trial = study.ask()
    rep = _TrialReporter(trial)
    with pytest.raises(optuna.TrialPruned, match="pruned at step"):
        for s in range(1, 101):
            rep.log_row(s, {"loss": 0.1, "reward": 0.3 + 0.05 * (1 - math.exp(-0.1 * s))})
    assert rep.value(10) < 0.4
    no_prune = _TrialReporter(study.ask(), prune=False)
    for s in range(1, 101):
        no_prune.log_row(s, {"loss": 0.1, "reward": 0.31})


def test_an_error_is_recorded_as_collapse_once() -> None:
    study = _study()
    trial = study.ask()
    rep = _TrialReporter(trial)
    rep.log_row(1, {"loss": 0.1, "reward": 0.3})
    rep.finish("RuntimeError: probability tensor contains nan")
    rep.finish()  # a second call (on_train_end after the objective's) changes nothing
    attrs = study.trials[0].user_attrs
    assert attrs["advisor:collapsed"] is True
    assert attrs["advisor:error"].startswith("RuntimeError")


@pytest.mark.slow
def test_a_users_own_grpo_trainer_objective(tmp_path) -> None:
    pytest.importorskip("trl")
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOTrainer

    from advisor.pilot import trial_callback
    from advisor.tasks import builtin_task
    from advisor.tasks import default_config

    task = builtin_task()

    def objective(trial: optuna.Trial) -> float:
        cfg = default_config(str(tmp_path / f"t{trial.number}"), max_steps=12,
                             learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-3,
                                                               log=True))
        cb = trial_callback(trial)
        trainer = GRPOTrainer(model=task.model_path, reward_funcs=list(task.reward_funcs),
                              args=cfg, train_dataset=task.train_dataset,
                              processing_class=task.tokenizer, callbacks=[cb])
        for extra in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(extra)
        trainer.train()
        return cb.value(5)

    study = _study(TrajectoryPruner(n_warmup_steps=5))
    study.optimize(objective, n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE
    assert sorted(t.intermediate_values) == list(range(1, 13))
    assert 0.0 <= t.value <= 1.0
    assert t.user_attrs["advisor:collapsed"] in (True, False)
    assert t.user_attrs["advisor:health"]["step"] == list(range(1, 13))


def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(TypeError, match="`trial` must be an optuna.Trial"):
        _TrialReporter({"learning_rate": 1e-3})
    trial = _study().ask()
    with pytest.raises(TypeError, match="`prune` must be True or False, got 'yes'"):
        _TrialReporter(trial, prune="yes")  # type: ignore[arg-type]
    rep = _TrialReporter(trial)
    assert math.isnan(rep.value(5))  # no reward logged yet
    for bad in (0, -3):
        with pytest.raises(ValueError, match="`window` must be"):
            rep.value(bad)
    with pytest.raises(TypeError, match="`window` must be"):
        rep.value(2.5)  # type: ignore[arg-type]
    assert rep.log_row(1, {}) is False and rep.log_row(2, None) is False  # empty rows: ignored


def test_a_nan_reward_is_a_collapse_not_a_report() -> None:
    study = _study()
    rep = _TrialReporter(study.ask())
    assert rep.log_row(1, {"loss": 0.1, "reward": 0.3}) is False
    assert rep.log_row(2, {"loss": float("nan"), "reward": float("nan")}) is True
    assert rep.rewards == [0.3, 0.3]  # carried forward, never the NaN
    rep.finish()
    assert study.trials[0].user_attrs["advisor:collapse_reason"] == "nonfinite"

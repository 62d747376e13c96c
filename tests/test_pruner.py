from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest

from advisor.exceptions import AdvisorWarning
from advisor.instability import first_unstable_step
from advisor.pruner import TrajectoryPruner


optuna.logging.set_verbosity(optuna.logging.WARNING)


def curve(start: float, plateau: float, rate: float, n: int) -> list[float]:
    """Overdamped trajectory p* - (p* - p0) e^{-rate t} plus a fixed +-0.01 ripple (noise)."""
    return [plateau - (plateau - start) * math.exp(-rate * t) + 0.01 * math.cos(7 * t)
            for t in range(n)]


REF = curve(0.2, 0.9, 0.1, 61)  # a completed trial, 61 steps, final reward 0.898


def run(pruner: TrajectoryPruner, refs: list[list[float]], new: list[float],
        direction: str = "maximize", health: dict[str, list[float]] | None = None,
        ) -> tuple[list[bool], dict[str, Any]]:
    """Add completed reference trials, then report `new` step by step; return should_prune()."""
    study = optuna.create_study(direction=direction, pruner=pruner)
    for ref in refs:
        value = ref[-1] if direction == "maximize" else ref[-1]
        study.add_trial(optuna.create_trial(value=value, intermediate_values=dict(enumerate(ref))))
    trial = study.ask()
    out = []
    for step, value in enumerate(new):
        if health is not None:
            trial.set_user_attr("advisor:health", {"step": list(range(step + 1)),
                                                   **{k: v[:step + 1] for k, v in health.items()}})
        trial.report(value, step)
        out.append(trial.should_prune())
    return out, study._storage.get_trial(trial._trial_id).user_attrs


NEVER = [False] * 31
AT_10 = [False] * 10 + [True] * 21  # once pruned, the rule keeps saying so


def every_fifth(first: int, n: int = 31) -> list[bool]:
    return [s >= first and (s - first) % 5 == 0 for s in range(n)]


@pytest.mark.parametrize(("new", "expected"), [
    # plateau 0.5 < 0.898: the band at step 60 clears 0.898 once 2 time constants are seen
    (curve(0.2, 0.5, 0.1, 31), every_fifth(20)),
    (curve(0.2, 0.95, 0.05, 31), NEVER),  # slower but higher: its band reaches above
    (REF[:31], NEVER),  # the best trial itself is never pruned (a tie)
    (curve(0.2, 0.9, 0.02, 31), every_fifth(15)),  # same plateau, 5x slower: 0.69 at step 60
])
def test_trajectory_rule_exact_sequence(new: list[float], expected: list[bool]) -> None:
    out, _ = run(TrajectoryPruner(n_warmup_steps=10), [REF], new)
    assert out == expected


def test_minimize_direction_mirrors() -> None:
    loss_ref = [1.0 - r for r in REF]
    out, attrs = run(TrajectoryPruner(n_warmup_steps=10), [loss_ref],
                     [1.0 - r for r in curve(0.2, 0.5, 0.1, 31)], direction="minimize")
    assert out == every_fifth(20)
    assert attrs["advisor:prune_reason"] == "trajectory"
    assert attrs["advisor:predicted_best_case"] > attrs["advisor:reference"]


def test_interval_steps_and_warmup() -> None:
    new = curve(0.2, 0.5, 0.1, 26)
    every, _ = run(TrajectoryPruner(n_warmup_steps=12, interval_steps=1), [REF], new)
    assert every == [False] * 20 + [True] * 6  # fits at every step from 12, prunes from 20
    fifth, _ = run(TrajectoryPruner(n_warmup_steps=12), [REF], new)
    assert fifth == [s == 22 for s in range(26)]  # fits at 12, 17, 22 only


@pytest.mark.parametrize(("percentile", "plateau", "expected"), [
    (50.0, 0.65, every_fifth(30)),  # median of finals 0.4/0.6/0.8/0.9 is about 0.7
    (50.0, 0.78, NEVER),
    (None, 0.78, every_fifth(25)),  # the best (0.9) is the reference
])
def test_percentile_reference(percentile: float | None, plateau: float,
                              expected: list[bool]) -> None:
    refs = [curve(0.2, p, 0.2, 61) for p in (0.4, 0.6, 0.8, 0.9)]
    out, _ = run(TrajectoryPruner(n_warmup_steps=10, percentile=percentile), refs,
                 curve(0.2, plateau, 0.1, 31))
    assert out == expected


def test_mean_statistic_prunes_slow_learners() -> None:
    # equal plateau but 2x slower: the final reward at 60 ties (0.86 +- band), the mean cannot
    slow = curve(0.2, 0.9, 0.05, 31)
    final, _ = run(TrajectoryPruner(n_warmup_steps=10, n_steps=60), [REF], slow)
    mean, attrs = run(TrajectoryPruner(n_warmup_steps=10, n_steps=60, statistic="mean"),
                      [REF], slow)
    assert final == NEVER
    assert mean == every_fifth(25)
    assert attrs["advisor:reference"] == pytest.approx(float(np.mean(REF)), rel=1e-12)


def test_no_completed_trial_no_trajectory_pruning() -> None:
    out, _ = run(TrajectoryPruner(n_warmup_steps=5), [], curve(0.2, 0.3, 0.1, 31))
    assert out == NEVER


# ------------------------------------------------------------------------------ collapse
def test_nonfinite_reward_prunes_at_once() -> None:
    new = [0.2, 0.25, 0.3, math.nan, 0.3]
    out, attrs = run(TrajectoryPruner(n_warmup_steps=100), [REF], new)
    assert out == [False, False, False, True, True]
    assert attrs["advisor:prune_reason"] == "collapse"
    assert attrs["advisor:collapse_rule"] == "nonfinite"
    assert attrs["advisor:collapsed"] is True


def test_nonfinite_without_collapse_rule_warns_and_keeps() -> None:
    pruner = TrajectoryPruner(n_warmup_steps=0, detect_collapse=False)
    with pytest.warns(AdvisorWarning, match="reported a non-finite value; it will not be pruned"):
        out, _ = run(pruner, [REF], [0.2, math.inf])
    assert out == [False, False]


def test_health_signals_trigger_the_shared_rule() -> None:
    # grad-norm spike (50x) at step 10, entropy +1 nat from step 12: the SGD collapse anatomy
    n = 20
    health = {"grad_norm": [50.0 if s == 10 else 1.0 for s in range(n)],
              "entropy": [3.0 if s >= 12 else 2.0 for s in range(n)]}
    rewards = [0.3 + 0.01 * s for s in range(n)]
    oracle = first_unstable_step({"step": list(range(n)), "reward": rewards, **health})
    out, attrs = run(TrajectoryPruner(n_warmup_steps=100), [REF], rewards, health=health)
    assert oracle == 12
    assert out == [s >= oracle for s in range(n)]
    assert attrs["advisor:collapse_rule"] == "noise_collapse"


def test_bad_health_attr_warns_and_does_not_prune() -> None:
    study = optuna.create_study(direction="maximize",
                                pruner=TrajectoryPruner(n_warmup_steps=100))
    trial = study.ask()
    trial.set_user_attr("advisor:health", {"step": [0, 1], "grad_norm": [1.0]})  # ragged
    trial.report(0.3, 0)
    with pytest.warns(AdvisorWarning, match="could not apply the instability rule to trial 0"):
        assert trial.should_prune() is False


def test_best_trial_without_intermediate_values_warns() -> None:
    study = optuna.create_study(direction="maximize", pruner=TrajectoryPruner(n_warmup_steps=0))
    study.add_trial(optuna.create_trial(value=0.9))
    trial = study.ask()
    trial.report(0.1, 0)
    with pytest.warns(AdvisorWarning, match="best trial has no intermediate values"):
        assert trial.should_prune() is False


def test_decision_has_no_hidden_memory() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.create_trial(value=REF[-1], intermediate_values=dict(enumerate(REF))))
    trial = study.ask()
    for step, v in enumerate(curve(0.2, 0.5, 0.1, 21)):  # pruned at step 20 (table above)
        trial.report(v, step)
    frozen = study._storage.get_trial(trial._trial_id)
    a, b = TrajectoryPruner(n_warmup_steps=10), TrajectoryPruner(n_warmup_steps=10)
    assert a.prune(study, frozen) is True
    assert b.prune(study, frozen) is True  # a fresh instance (another worker) agrees


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"n_warmup_steps": -1}, ValueError, "`n_warmup_steps` must be an integer >= 0"),
    ({"n_startup_trials": 0}, ValueError, "`n_startup_trials` must be an integer >= 1"),
    ({"interval_steps": 0}, ValueError, "`interval_steps` must be an integer >= 1"),
    ({"percentile": 100.0}, ValueError, r"`percentile` must be a finite number in \(0, 100\)"),
    ({"interval": 1.0}, ValueError, r"`interval` must be a finite number in \(0, 1\)"),
    ({"n_steps": 0}, ValueError, "`n_steps` must be an integer >= 1"),
    ({"statistic": "max"}, ValueError, "`statistic` must be one of 'final', 'mean'"),
    ({"models": ()}, ValueError, "`models` must name at least one trajectory model"),
    ({"n_warmup_steps": 2.5}, TypeError, "`n_warmup_steps` must be an integer"),
])
def test_bad_constructor_arguments(kwargs: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        TrajectoryPruner(**kwargs)

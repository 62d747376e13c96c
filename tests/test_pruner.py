from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest

from advisor.dynamics import fit_trajectory
from advisor.dynamics import trajectory
from advisor.exceptions import AdvisorWarning
from advisor.instability import first_unstable_step
from advisor.pruner import TrajectoryPruner
from advisor.pruner import _fit
from advisor.pruner import _fit_kwargs
from advisor.pruner import _heavy_ball_momentum


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


def oracle(new: list[float], reference: float, *, warmup: int = 10, every: int = 5,
           horizon: int = 60, statistic: str = "final", maximize: bool = True) -> list[bool]:
    """The trajectory rule computed directly with fit_trajectory + predict (reports each step)."""
    out = []
    for s in range(len(new)):
        if s < warmup or (s - warmup) % every or s >= horizon:
            out.append(False)
            continue
        fit = fit_trajectory(np.array(new[: s + 1]), steps=np.arange(s + 1.0),
                             models=("exponential",))
        n_future = horizon - s
        points = (np.array([float(horizon)]) if statistic == "final"
                  else np.linspace(s + 1, horizon, min(16, n_future)))
        _, low, high = fit.predict(points, interval=0.9, n_samples=500)
        band = high if maximize else low
        best = (float(band[-1]) if statistic == "final" else
                (sum(new[: s + 1]) + float(band.mean()) * n_future) / (s + 1 + n_future))
        out.append(best < reference - 1e-9 if maximize else best > reference + 1e-9)
    return out


def final_of(c: list[float]) -> float:
    return c[-1]


@pytest.mark.parametrize("new", [
    curve(0.2, 0.5, 0.1, 31),  # plateau 0.5 < 0.898
    curve(0.2, 0.95, 0.05, 31),  # slower but higher
    REF[:31],  # the best trial itself
    curve(0.2, 0.9, 0.02, 31),  # same plateau, 5x slower: 0.69 at step 60
])
def test_trajectory_rule_matches_oracle(new: list[float]) -> None:
    out, _ = run(TrajectoryPruner(n_warmup_steps=10), [REF], new)
    assert out == oracle(new, final_of(REF))


def test_trajectory_rule_clear_cases() -> None:
    # band-independent facts: the best trial and a better one are never pruned; a curve
    # heading to 0.5 is pruned once its plateau is identified (by 3 time constants)
    assert run(TrajectoryPruner(n_warmup_steps=10), [REF], REF[:31])[0] == NEVER
    assert run(TrajectoryPruner(n_warmup_steps=10), [REF], curve(0.2, 0.95, 0.05, 31))[0] == NEVER
    slow, attrs = run(TrajectoryPruner(n_warmup_steps=10), [REF], curve(0.2, 0.5, 0.1, 31))
    assert slow[30] and not any(slow[:10])
    assert attrs["advisor:prune_reason"] == "trajectory"
    assert attrs["advisor:predicted_best_case"] < attrs["advisor:reference"]


def test_minimize_direction_mirrors() -> None:
    loss_ref = [1.0 - r for r in REF]
    new = [1.0 - r for r in curve(0.2, 0.5, 0.1, 31)]
    out, attrs = run(TrajectoryPruner(n_warmup_steps=10), [loss_ref], new, direction="minimize")
    assert out == oracle(new, loss_ref[-1], maximize=False)
    assert out[30]
    assert attrs["advisor:predicted_best_case"] > attrs["advisor:reference"]


def test_interval_counts_reports_not_steps() -> None:
    new = curve(0.2, 0.5, 0.1, 26)
    every, _ = run(TrajectoryPruner(n_warmup_steps=12, interval_steps=1), [REF], new)
    assert every == oracle(new, final_of(REF), warmup=12, every=1)
    fifth, _ = run(TrajectoryPruner(n_warmup_steps=12), [REF], new)
    assert fifth == oracle(new, final_of(REF), warmup=12, every=5)
    assert not any(fifth[s] for s in range(26) if s not in (12, 17, 22))
    # sparse reports (every 10 steps, at 9, 19, ...): fits at every 5th report after warm-up
    study = optuna.create_study(direction="maximize",
                                pruner=TrajectoryPruner(n_warmup_steps=10, interval_steps=2))
    study.add_trial(optuna.create_trial(value=0.9, intermediate_values={
        s: v for s, v in enumerate(curve(0.2, 0.9, 0.01, 600))}))
    trial = study.ask()
    pruned = []
    for k, s in enumerate(range(9, 300, 10)):
        trial.report(0.3 - 0.1 * math.exp(-0.05 * s) + 0.005 * math.cos(7 * k), s)
        pruned.append(trial.should_prune())
    # steps 19, 39, 59, ... are the 1st, 3rd, 5th reports after the warm-up: the only fits
    assert any(pruned)
    assert all(k % 2 == 1 for k, p in enumerate(pruned) if p)


@pytest.mark.parametrize(("percentile", "plateau"), [(50.0, 0.65), (50.0, 0.78), (None, 0.78)])
def test_percentile_reference(percentile: float | None, plateau: float) -> None:
    refs = [curve(0.2, p, 0.2, 61) for p in (0.4, 0.6, 0.8, 0.9)]
    finals = sorted(r[-1] for r in refs)
    reference = float(np.percentile(finals, 50.0)) if percentile else finals[-1]
    new = curve(0.2, plateau, 0.1, 31)
    out, _ = run(TrajectoryPruner(n_warmup_steps=10, percentile=percentile), refs, new)
    assert out == oracle(new, reference)
    if percentile is not None and plateau > 0.75:
        assert out == NEVER  # above the median (about 0.7) for good


def test_mean_statistic_prunes_slow_learners() -> None:
    # equal plateau but 2x slower: the final reward at 60 ties, the mean over 60 steps cannot
    slow = curve(0.2, 0.9, 0.05, 31)
    final, _ = run(TrajectoryPruner(n_warmup_steps=10, n_steps=60), [REF], slow)
    mean, attrs = run(TrajectoryPruner(n_warmup_steps=10, n_steps=60, statistic="mean"),
                      [REF], slow)
    assert final == oracle(slow, final_of(REF)) == NEVER
    assert mean == oracle(slow, float(np.mean(REF)), statistic="mean")
    assert mean[30]
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
    for step, v in enumerate(curve(0.2, 0.5, 0.1, 31)):  # pruned at step 30 (see above)
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


@pytest.mark.parametrize(("params", "expected"), [
    ({"momentum": 0.9}, 0.9),  # `momentum` alone selects heavy-ball SGD (advisor.knobs)
    ({"optim": "sgd", "momentum": 0.5}, 0.5),
    ({"optim": "sgd", "optim_args": "momentum=0.8,nesterov=False"}, 0.8),
    ({"optim": "sgd"}, 0.0),  # torch.optim.SGD's default
    ({"optim": "adamw_torch", "adam_beta1": 0.9}, None),  # beta1 is an EMA, not heavy ball
    ({"learning_rate": 1e-3}, None),  # no optimizer information
    ({"momentum": 1.5}, None),
    ({"momentum": "fast"}, None),
    ({"momentum": True}, None),
])
def test_heavy_ball_momentum_is_read_like_knobs(params: dict[str, Any],
                                                expected: float | None) -> None:
    assert _heavy_ball_momentum(params) == expected


@pytest.mark.parametrize(("params", "models", "expected"), [
    ({"momentum": 0.9}, None, [{"models": ("heavy_ball",), "momentum": 0.9},
                               {"models": ("exponential", "oscillator")}]),
    ({"momentum": 0.3}, None, [{"models": ("heavy_ball",), "momentum": 0.3},
                               {"models": ("exponential",)}]),
    ({"momentum": 0.2}, None, [{"models": ("exponential",)}]),
    ({"optim": "adamw_torch"}, None, [{"models": ("exponential",)}]),
    ({"momentum": 0.9}, ("exponential",), [{"models": ("exponential",)}]),  # explicit wins
    ({"momentum": 0.7}, ("heavy_ball",), [{"models": ("heavy_ball",), "momentum": 0.7}]),
])
def test_models_by_known_momentum(params: dict[str, Any], models: tuple[str, ...] | None,
                                  expected: list[dict[str, Any]]) -> None:
    assert _fit_kwargs(params, models) == expected


def _momentum_study(params: dict[str, Any], rewards: list[float],
                    defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """InMemory study: one completed reference, then a trial with `params` reporting rewards."""
    pruner = TrajectoryPruner(n_warmup_steps=30, n_steps=150, defaults=defaults)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                direction="maximize", pruner=pruner)
    ref = [0.9 - 0.6 * math.exp(-0.05 * s) for s in range(151)]
    study.add_trial(optuna.create_trial(value=ref[-1], intermediate_values=dict(enumerate(ref))))
    study.enqueue_trial(params)
    trial = study.ask()
    for name, value in params.items():
        if isinstance(value, float):
            trial.suggest_float(name, 0.0, 0.99)
        else:
            trial.suggest_categorical(name, [value])
    pruned = []
    for step, value in enumerate(rewards):
        trial.report(value, step)
        pruned.append(trial.should_prune())
    return {"pruned": pruned, **study._storage.get_trial(trial._trial_id).user_attrs}


def test_pruner_fits_the_known_momentum_from_trial_params() -> None:
    # a heavy-ball mu = 0.9 trial heading to 0.5 (zeta = 0.79: inertial start) + a ripple
    k = np.arange(61)
    truth = trajectory(k, plateau=0.5, start=0.2, rate=0.04, momentum=0.9, model="heavy_ball")
    rewards = [float(v) for v in truth + 0.01 * np.cos(7 * k)]

    def best_case(**kwargs: Any) -> float:
        fit = fit_trajectory(np.array(rewards), steps=k.astype(float), **kwargs)
        return float(fit.predict([150.0], interval=0.9, n_samples=500)[2][0])

    sgd = _momentum_study({"momentum": 0.9}, rewards)
    adam = _momentum_study({"optim": "adamw_torch", "adam_beta1": 0.9}, rewards)
    hb = best_case(models=("heavy_ball",), momentum=0.9)
    exp = best_case(models=("exponential",))
    assert sgd["pruned"][60] and adam["pruned"][60]
    # SGD: the exact heavy-ball band at mu = 0.9; AdamW: beta1 is not heavy ball, exponential
    assert sgd["advisor:predicted_best_case"] == pytest.approx(hb, abs=1e-9)
    assert adam["advisor:predicted_best_case"] == pytest.approx(exp, abs=1e-9)
    assert hb < exp - 0.1  # the exact model is far more confident on this inertial prefix
    # a fixed (not searched) momentum given as the pruner's defaults is read the same way
    fixed = _momentum_study({"top_p": 0.5}, rewards,
                            defaults={"momentum": 0.9})
    assert fixed["advisor:predicted_best_case"] == pytest.approx(hb, abs=1e-9)
    # the trial's own optimizer wins over the defaults: AdamW has no heavy-ball momentum
    mixed = _momentum_study({"optim": "adamw_torch"}, rewards, defaults={"momentum": 0.9})
    assert mixed["advisor:predicted_best_case"] == pytest.approx(exp, abs=1e-9)


def test_pruner_defaults_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="`defaults` must be a mapping"):
        TrajectoryPruner(defaults=[("momentum", 0.9)])  # type: ignore[arg-type]


def test_unreadable_momentum_param_never_raises() -> None:
    rewards = curve(0.2, 0.5, 0.1, 61)
    out = _momentum_study({"optim": "sgd", "optim_args": "momentum=oops"}, rewards)
    assert out["pruned"][60]  # exponential fallback: heading to 0.5 < 0.9
    assert out["advisor:prune_reason"] == "trajectory"


def test_failed_heavy_ball_fit_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor import dynamics
    from advisor.exceptions import FitError

    real = dynamics.fit_trajectory
    calls: list[tuple[str, ...]] = []

    def flaky(rewards: Any, **kwargs: Any) -> Any:
        calls.append(tuple(kwargs["models"]))
        if "heavy_ball" in kwargs["models"]:
            raise FitError("did not converge", partial=None)
        return real(rewards, **kwargs)

    monkeypatch.setattr(dynamics, "fit_trajectory", flaky)
    y = np.array(curve(0.2, 0.5, 0.1, 31))
    fit = _fit({"momentum": 0.9}, np.arange(31.0), y, None)
    assert calls == [("heavy_ball",), ("exponential", "oscillator")]
    assert fit.model in ("exponential", "oscillator")


# ------------------------------------------------------------------------------ user scenarios
@pytest.mark.parametrize("every", [1, 10])
def test_trial_identical_to_the_best_is_not_pruned_under_the_mean_statistic(every: int) -> None:
    # the future mean came from 16 evenly spaced band points including both ends: 0.004 too
    # low on this curve, so the best trial's own twin was pruned at the end of the warm-up
    n = 400
    t = np.arange(0, n, every)
    ref = 0.9 - 0.5 * np.exp(-t / 80.0)
    study = optuna.create_study(direction="maximize", pruner=TrajectoryPruner(
        n_warmup_steps=50, n_steps=n - every, statistic="mean", interval_steps=1))
    study.add_trial(optuna.create_trial(value=float(ref.mean()), intermediate_values={
        int(s): float(v) for s, v in zip(t, ref, strict=True)}))
    trial = study.ask()
    for s, v in zip(t, ref, strict=True):
        trial.report(float(v), int(s))
        assert not trial.should_prune(), (s, study.trials[-1].user_attrs)


@pytest.mark.parametrize(("steps", "horizon"), [
    (np.arange(51.0), 399), (np.arange(0.0, 60.0, 10.0), 2000), (np.arange(5.0), 70),
    (np.arange(0.0, 300.0, 3.0), 3000)])
def test_future_report_mean_matches_the_sum_over_reports(steps: np.ndarray,
                                                         horizon: int) -> None:
    from advisor.pruner import _future_reports

    def f(x: np.ndarray) -> np.ndarray:
        return 0.9 - 0.5 * np.exp(-np.asarray(x) / 80.0)

    points, weights, n = _future_reports(steps, horizon)
    h = (steps[-1] - steps[0]) / (steps.size - 1)
    exact = f(steps[-1] + h * np.arange(1, n + 1)).mean()  # oracle: every future report
    assert n == int((horizon - steps[-1]) // h)
    assert float(np.dot(weights, f(points))) == pytest.approx(exact, rel=1e-6)


def test_overflowing_rewards_warn_instead_of_raising() -> None:
    study = optuna.create_study(direction="maximize", pruner=TrajectoryPruner(
        n_warmup_steps=2, n_steps=20, interval_steps=1))
    study.add_trial(optuna.create_trial(value=1.0, intermediate_values={
        s: 1.0 for s in range(21)}))
    trial = study.ask()
    with pytest.warns(AdvisorWarning, match="could not apply the instability rule"):
        for s in range(10):
            trial.report(1e308 * (s % 2), s)  # OverflowError in the rule's window sums
            trial.should_prune()


def test_multi_objective_study_is_never_pruned() -> None:
    # Optuna refuses Trial.report here; called directly the pruner must not raise either
    pruner = TrajectoryPruner(n_warmup_steps=0)
    study = optuna.create_study(directions=["maximize", "minimize"], pruner=pruner)
    frozen = optuna.create_trial(state=optuna.trial.TrialState.RUNNING,
                                 intermediate_values={0: 0.1, 1: float("nan")})
    with pytest.warns(AdvisorWarning, match="multi-objective study is not supported"):
        assert pruner.prune(study, frozen) is False


def test_constrained_study_without_a_feasible_best_trial_does_not_raise() -> None:
    pruner = TrajectoryPruner(n_warmup_steps=2, n_steps=20, interval_steps=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trial(optuna.create_trial(  # infeasible (constraint value > 0)
        value=0.9, intermediate_values={s: 0.9 for s in range(21)},
        system_attrs={"constraints": [1.0]}))
    trial = study.ask()
    for s in range(8):
        trial.report(0.1 * s, s)
        assert trial.should_prune() is False


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"models": ("nope",)}, ValueError, "`models` must be one of"),
    ({"models": "exponential"}, ValueError, "`models` must name at least one trajectory model"),
    ({"detect_collapse": "no"}, TypeError, "`detect_collapse` must be a bool, got str"),
])
def test_pruner_bad_models_and_flags(kwargs: dict[str, Any], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        TrajectoryPruner(**kwargs)

"""What was measured: the pilot's runs and cost, and the finished Optuna trials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from advisor.instability import trial_collapsed
from advisor.report._format import _g


if TYPE_CHECKING:
    import optuna


def _pilot_attr(pilot: Any, *names: str) -> Any:
    for name in names:
        value = getattr(pilot, name, None)
        if value is not None:
            return value
    return None

def _pilot_summary(pilot: Any) -> dict[str, Any] | None:
    if pilot is None:
        return None
    keys = ("cost_steps", "cost_seconds", "seconds_per_generation", "seconds_per_step",
            "start_reward")
    out = {k: _pilot_attr(pilot, k) for k in keys}
    timing = getattr(pilot, "timing", None)
    if timing is not None:
        for k in ("seconds_per_generation", "seconds_per_step"):
            out[k] = out[k] if out[k] is not None else getattr(timing, k, None)
    return {k: v for k, v in out.items() if v is not None}


def _pilot_points(pilot: Any) -> tuple[Mapping[str, Any], ...]:
    """Measured on-policy runs of the pilot at its own batch (learning rate, label)."""
    pts = []
    for run in getattr(pilot, "runs", None) or ():
        if run.samples_per_step != pilot.samples_per_step:
            continue  # the second batch point belongs to another cross-section
        pts.append({"learning_rate": float(run.learning_rate), "momentum": float(pilot.momentum),
                    "refresh_interval": 1.0, "seed": int(run.seed), "purpose": run.purpose,
                    "unstable": bool(run.unstable), "reason": run.reason})
    return tuple(pts)


def _trial_summary(study: optuna.Study | None) -> dict[str, Any] | None:
    if study is None:
        return None
    import optuna

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.is_finished()]
    if not done:
        return None
    collapsed = [t for t in done if _collapsed(t)]
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    out: dict[str, Any] = {"finished": len(done), "complete": len(complete),
                           "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in done),
                           "collapsed": len(collapsed),
                           "collapse_rate": len(collapsed) / len(done)}
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in done)
    if failed:  # raised or interrupted: shown apart from collapses
        out["failed_or_interrupted"] = failed
    if complete and len(study.directions) == 1:  # in the study's own direction
        pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
        best = pick(complete, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        out["best_value"] = best.value
        out["best_params"] = ", ".join(f"{k}={_g(v) if not isinstance(v, str) else v}"
                                       for k, v in best.params.items())
    return out


def _collapsed(trial: Any) -> bool:
    # the shared rule (advisor.instability): a trial that raised or was interrupted (FAIL) is
    # counted as failed, not as a collapse; the advisor's objective records collapses itself
    return trial_collapsed(trial.user_attrs)


def _trial_points(study: optuna.Study | None,
                  fixed: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    if study is None:
        return ()
    pts = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        p = {**fixed, **t.params}
        lr = p.get("learning_rate", t.user_attrs.get("advisor:learning_rate"))
        if lr is None:
            continue
        kref = (float(p.get("steps_per_generation", 1)) * float(p.get("num_iterations", 1))
                / float(p.get("gradient_accumulation_steps", 1)))
        pts.append({"number": t.number, "learning_rate": float(lr),
                    "momentum": float(p.get("momentum", 0.0)), "refresh_interval": kref,
                    "state": "collapsed" if _collapsed(t) else t.state.name.lower()})
    return tuple(pts)

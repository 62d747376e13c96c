"""What a study trains: the bandit problem, a TRL objective's inputs, the Optuna objective."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from advisor.study_file import StudyFile
from advisor.study_file import StudyFileError
from advisor.study_file import suggest_params


def bandit_problem(study: StudyFile) -> Any:
    """The :class:`advisor.bandit.BanditProblem` of a ``builtin:bandit`` study.

    ``fixed.beta`` overrides the problem's KL coefficient; the problem is named by
    ``[report]``-independent key ``objective.problem`` (default ``reference``).
    """
    from advisor.bandit import BanditProblem

    name = study.objective_options.get("problem", "reference")
    overrides = {"beta": float(study.fixed["beta"])} if "beta" in study.fixed else {}
    return getattr(BanditProblem, name)(**overrides)

def _bandit_model(study_or_problem: Any, curves: Sequence[Mapping[str, Any]]) -> Any:
    from advisor.stability import StabilityModel
    from advisor.stiffness import PilotCurve
    from advisor.stiffness import estimate_stiffness

    est = estimate_stiffness([PilotCurve(**c) for c in curves])
    # 1500 simulated steps per nonlinear check (default 4000): a run just above the edge of
    # these problems diverges within a few hundred steps, and the check runs per trial
    return StabilityModel(est, problem=study_or_problem, simulation_steps=1500)


def _trl_inputs(study: StudyFile) -> dict[str, Any]:
    """model / reward_funcs / train_dataset / processing_class for a TRL objective."""
    if study.objective == "builtin:tiny":
        from advisor.tasks import builtin_task

        task = builtin_task()
        return {"model": task.model_path, "reward_funcs": list(task.reward_funcs),
                "train_dataset": task.train_dataset, "processing_class": task.tokenizer,
                "start_reward": task.base_success}
    import importlib

    module_name, func_name = study.objective.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise StudyFileError(f"`objective.kind` must name an importable function, got "
                             f"{study.objective!r} ({exc}). Check the module is on PYTHONPATH."
                             ) from None
    try:
        built = func()
    except Exception as exc:  # the user's own code: say whose it is, keep the chain (--debug)
        raise StudyFileError(f"the objective {study.objective} raised {type(exc).__name__}: "
                             f"{exc}. Fix it there (add --debug for the traceback).") from exc
    if not isinstance(built, Mapping):
        raise StudyFileError(f"{study.objective} must return a mapping with model, reward_funcs "
                             f"and train_dataset, got {type(built).__name__}.")
    missing = [k for k in ("model", "reward_funcs", "train_dataset") if k not in built]
    if missing:
        raise StudyFileError(f"{study.objective} must return a mapping with model, reward_funcs "
                             f"and train_dataset, got keys {sorted(built)} (missing {missing}).")
    return dict(built)

def _config_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    from advisor.knobs import to_grpo_kwargs

    return to_grpo_kwargs(dict(params))


def _bandit_collapsed(problem: Any, run: Any, knobs: Any, steps: int) -> bool:
    """Whether a bandit trial collapsed: non-finite, or its dynamics do not settle.

    The dynamics are judged on the noise-free infinite-group run of the same (learning rate,
    momentum, refresh interval), since a finite group's sampling noise never settles. The
    bandit's regime classifier calls a run "divergent" whenever it has not settled by the
    end of the window, which includes a slow run still rising towards its plateau: a run whose
    distance to the fixed point only shrinks, on one side of it, is not a collapse.
    """
    import numpy as np

    from advisor.bandit import simulate
    from advisor.dynamics import Regime

    if bool(run.diverged[0]):
        return True
    det = run if run.num_generations is None else simulate(
        problem, learning_rate=knobs.learning_rate, momentum=knobs.heavy_ball_momentum,
        refresh_interval=int(round(knobs.refresh_interval)), n_steps=steps)
    if bool(det.diverged[0]):
        return True
    if det.regimes()[0] != Regime.DIVERGENT:
        return False
    dev = det.reward_current[0] - det.p_star
    side = np.sign(dev[np.abs(dev) > 0])
    approaching = bool(np.all(np.diff(np.abs(dev)) <= 1e-12) and np.all(side == side[0])
                       ) if side.size else True
    return not approaching


def make_bandit_objective(study: StudyFile) -> Any:
    """Optuna objective on the exact bandit reduction (``builtin:bandit``).

    Each trial simulates ``budget.steps`` optimizer steps with the trial's learning rate,
    heavy-ball momentum, refresh interval and group size; it reports the reward every few steps
    and returns the mean reward of the current policy over the run (fast learners score high).
    A run that diverges or does not settle (`_bandit_collapsed`) is marked
    ``advisor:collapsed``; like `advisor.pilot.make_objective` it still completes, with the start
    reward standing in for the steps after a divergence.
    """
    import numpy as np
    import optuna

    from advisor.bandit import simulate
    from advisor.knobs import knobs_from_params

    problem = bandit_problem(study)
    steps = study.budget.steps
    stride = max(1, steps // 25)  # ~25 reports: enough for the pruner's fit, few DB writes

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, study.search_space)
        k = knobs_from_params({**study.fixed, **params}, defaults={"optim": "sgd"})
        g = int(params.get("num_generations", study.fixed.get("num_generations", 0))) or None
        run = simulate(problem, learning_rate=k.learning_rate, momentum=k.heavy_ball_momentum,
                       refresh_interval=int(round(k.refresh_interval)), num_generations=g,
                       n_steps=steps, seed=trial.number)
        used, cur = run.reward_used[0], run.reward_current[0]
        collapsed = _bandit_collapsed(problem, run, k, steps)
        trial.set_user_attr("advisor:collapsed", collapsed)
        for step in range(0, steps, stride):
            if not np.isfinite(used[step]):
                break
            trial.report(float(used[step]), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")
        return float(np.mean(np.where(np.isfinite(cur), cur, problem.start_reward)))

    return objective


def make_study_objective(study: StudyFile) -> Any:
    """The Optuna objective of ``study``: the bandit, or real TRL training via the pilot module."""
    if study.objective == "builtin:bandit":
        return make_bandit_objective(study)
    from advisor.pilot import make_objective
    from advisor.tasks import default_config

    inputs = _trl_inputs(study)
    out = study.directory / f"{study.name}-trials"
    args = inputs.get("args") or default_config(
        str(out), **{"max_steps": study.budget.steps, **_config_kwargs(study.fixed)})
    return make_objective(inputs["model"], inputs["reward_funcs"], inputs["train_dataset"], args,
                          search_space=lambda trial: suggest_params(trial, study.search_space),
                          processing_class=inputs.get("processing_class"), output_dir=out)

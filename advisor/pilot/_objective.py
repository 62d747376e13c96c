"""Optuna objective: one trial = one real GRPO run, reported per step, pruned on request."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from advisor._validation import check_int
from advisor.instability import InstabilityDetector
from advisor.instability import label_run
from advisor.knobs import to_grpo_kwargs
from advisor.pilot._checks import RewardFunctionError
from advisor.pilot._checks import _check_batch
from advisor.pilot._checks import _check_dataset
from advisor.pilot._checks import _model_source
from advisor.pilot._checks import _wrap_reward
from advisor.pilot._runner import _FORCED


if TYPE_CHECKING:
    import optuna
    from trl import GRPOConfig


def make_objective(
    model: Any,
    reward_funcs: Any,
    train_dataset: Any,
    args: GRPOConfig,
    *,
    search_space: Callable[[optuna.Trial], Mapping[str, Any]] | None = None,
    processing_class: Any = None,
    output_dir: str | Path = "grpo-advisor-trials",
    window: int = 10,
    collapsed_value: float | None = None,
    n_threads: int | None = 1,
) -> Callable[[optuna.Trial], float]:
    """Turn an Optuna trial into a real GRPO run and return its final reward.

    Each trial builds a fresh ``GRPOConfig`` from ``args`` plus the sampled parameters (named as
    GRPOConfig fields; ``momentum`` via `advisor.knobs.to_grpo_kwargs`), trains, reports the
    reward per optimizer step (carried forward over steps that log none) with
    ``trial.report``, stores health signals as ``"advisor:"`` user attributes for the pruner,
    honours ``trial.should_prune()`` (``optuna.TrialPruned``), and stops a run at a collapse
    (the shared instability rule; ``"advisor:collapsed"`` is set).

    Args:
        model, reward_funcs, train_dataset, processing_class: As for `run_pilot`.
        args: Base ``GRPOConfig`` (study-safe settings are forced: constant lr, logging every
            step, no saving or trackers).
        search_space: ``trial -> params``; default samples ``learning_rate`` log-uniformly in
            [lr/10, 10 lr] around ``args.learning_rate``.
        output_dir: Trainer output root (one sub-folder per trial).
        window: Steps in the final-reward mean.
        collapsed_value: Value returned for collapsed runs (None: their final-window reward).
        n_threads: torch threads inside a trial (None: unchanged).

    Returns:
        ``objective(trial) -> float`` for ``study.optimize``.

    Example:
        >>> import optuna  # doctest: +SKIP
        >>> study = optuna.create_study(direction="maximize")  # doctest: +SKIP
        >>> study.optimize(make_objective(path, funcs, ds, cfg), n_trials=4)  # doctest: +SKIP
    """
    _check_dataset(train_dataset)
    window = check_int("window", window, low=1)
    funcs = [_wrap_reward(f) for f in (
        reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs])]
    root = Path(output_dir)
    source = _model_source(model, processing_class, root)
    if search_space is None:
        lr0 = float(args.learning_rate)

        def search_space(trial: optuna.Trial) -> dict[str, Any]:
            return {"learning_rate": trial.suggest_float("learning_rate", lr0 / 10, lr0 * 10,
                                                         log=True)}

    def objective(trial: optuna.Trial) -> float:
        params = dict(search_space(trial))
        changes = dict(to_grpo_kwargs(params), output_dir=str(root / f"trial-{trial.number}"))
        forced = {k: v for k, v in _FORCED.items() if hasattr(args, k)
                  and k not in ("num_iterations", "generation_batch_size")}
        # __post_init__ resolved both; TRL rejects both set, so keep the one the trial sets
        if changes.get("generation_batch_size") is not None:
            changes.setdefault("steps_per_generation", None)
        else:
            changes["generation_batch_size"] = None
        cfg = dataclasses.replace(args, **{**forced, **changes})
        _check_batch(cfg)
        return _train_trial(trial, cfg, source, funcs, train_dataset, processing_class, window,
                            collapsed_value, n_threads)

    return objective


def _train_trial(trial: Any, cfg: Any, source: Any, funcs: Any, dataset: Any, tok: Any,
                 window: int, collapsed_value: float | None, n_threads: int | None) -> float:
    import optuna
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOTrainer

    detector = InstabilityDetector()
    rewards: list[float] = []
    history: list[dict[str, float]] = []
    health: dict[str, list[float | None]] = {key: [] for key in ("step", *_HEALTH_KEYS)}
    trial.set_user_attr("advisor:learning_rate", float(cfg.learning_rate))

    class _TrialCallback(TrainerCallback):  # type: ignore[misc]
        def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **k: Any) -> None:
            if not logs or ("loss" not in logs and "reward" not in logs) \
                    or not state.is_world_process_zero:
                return
            row = {"step": state.global_step, **{key: float(v) for key, v in logs.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}}
            r = row.get("reward")
            if r is not None and math.isfinite(r):
                rewards.append(r)
            elif rewards:
                rewards.append(rewards[-1])
            history.append(row)
            label = detector.update(row) if detector.label is None else None
            _set_health(trial, row, detector, health)
            if rewards:
                trial.report(rewards[-1], state.global_step)
            if label is not None:
                control.should_training_stop = True
            elif trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {state.global_step}")

    threads = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    hf_logging.disable_progress_bar()
    error = None
    try:
        trainer = GRPOTrainer(model=source, reward_funcs=funcs, args=cfg, train_dataset=dataset,
                              processing_class=tok, callbacks=[_TrialCallback()])
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        trainer.train()
    except (optuna.TrialPruned, RewardFunctionError):
        raise
    except Exception as exc:  # a collapse that crashed sampling (NaN probabilities)
        error = f"{type(exc).__name__}: {exc}"[:300]
        trial.set_user_attr("advisor:error", error)
    finally:
        torch.set_num_threads(threads)
        hf_logging.enable_progress_bar()
        if health["step"]:  # the rows since the last periodic write
            trial.set_user_attr("advisor:health", health)
    collapsed = error is not None or detector.label is not None
    trial.set_user_attr("advisor:collapsed", collapsed)
    if history and any("reward" in row for row in history):
        final = label_run(history, start_reward=None, error=error)  # the end rule too
        trial.set_user_attr("advisor:unstable", final.unstable)
        trial.set_user_attr("advisor:instability_reason", final.reason)
    if detector.label is not None:
        trial.set_user_attr("advisor:collapse_reason", detector.label.reason)
        trial.set_user_attr("advisor:collapse_step", detector.label.step)
    if collapsed and collapsed_value is not None:
        return float(collapsed_value)
    if not rewards:
        return float("nan")
    return float(statistics.fmean(rewards[-window:]))


_HEALTH_KEYS = ("reward", "grad_norm", "entropy", "kl", "frac_reward_zero_std", "reward_std",
                "clip_ratio/region_mean")


def _set_health(trial: Any, row: Mapping[str, float], detector: InstabilityDetector,
                health: dict[str, list[float | None]]) -> None:
    """Health signals for `advisor.pruner.TrajectoryPruner`, under ``advisor:`` keys.

    ``"advisor:health"`` holds one column per TRL log key (None where a step did not log it),
    ``"advisor:start_reward"`` the start reward of the shared instability rule. The whole
    attribute is rewritten at each write, so after the first ``_HEALTH_EVERY_STEP`` rows it is
    written at about ``_HEALTH_WRITES`` evenly spaced rows per doubling of the run (and when the
    rule fires, and at the end): a row-per-step rewrite would cost O(steps^2) storage traffic
    (56 ms per step at 5,000 steps on SQLite). The objective's own detector sees every row.
    """
    for key, column in health.items():
        value = row.get(key)
        column.append(value)  # None where not logged; NaN/inf kept: they signal divergence
    n = len(health["step"])
    due = (detector.label is not None or n <= _HEALTH_EVERY_STEP
           or n % -(-n // _HEALTH_WRITES) == 0)
    if due:
        trial.set_user_attr("advisor:health", health)
        if math.isfinite(detector.start):
            trial.set_user_attr("advisor:start_reward", detector.start)


_HEALTH_EVERY_STEP = 256  # rows written at every step
_HEALTH_WRITES = 128  # then about this many writes per doubling of the run

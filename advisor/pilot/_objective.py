"""Optuna objective: one trial = one real GRPO run, reported per step, pruned on request."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from advisor._validation import check_int
from advisor.knobs import to_grpo_kwargs
from advisor.pilot._checks import RewardFunctionError
from advisor.pilot._checks import _check_batch
from advisor.pilot._checks import _check_dataset
from advisor.pilot._checks import _model_source
from advisor.pilot._checks import _wrap_reward
from advisor.pilot._runner import _FORCED
from advisor.pilot._trial_callback import trial_callback


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
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOTrainer

    trial.set_user_attr("advisor:learning_rate", float(cfg.learning_rate))
    callback = trial_callback(trial)
    threads = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    hf_logging.disable_progress_bar()
    error = None
    try:
        trainer = GRPOTrainer(model=source, reward_funcs=funcs, args=cfg, train_dataset=dataset,
                              processing_class=tok, callbacks=[callback])
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        trainer.train()
    except (optuna.TrialPruned, RewardFunctionError):
        raise
    except Exception as exc:  # a collapse that crashed sampling (NaN probabilities)
        error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        torch.set_num_threads(threads)
        hf_logging.enable_progress_bar()
    callback.finish(error)  # a no-op when on_train_end already wrote the outcome
    if (error is not None or callback.collapsed) and collapsed_value is not None:
        return float(collapsed_value)
    return callback.value(window)

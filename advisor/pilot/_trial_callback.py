"""`trial_callback`: connect your own ``GRPOTrainer`` run to an Optuna trial.

`make_objective` builds the trainer for you. When your objective already builds its own
``GRPOTrainer``, pass ``callbacks=[trial_callback(trial)]`` instead: the callback does what the
advisor's objective does inside training (report the reward per optimizer step, store the health
signals the pruner reads, stop at a collapse, raise ``optuna.TrialPruned`` when the pruner says
so) and records the outcome as ``advisor:`` user attributes at the end. The class is built on
first use, so importing this module does not load transformers.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from advisor._validation import check_int
from advisor.instability import InstabilityDetector
from advisor.instability import label_run


_HEALTH_KEYS = ("reward", "grad_norm", "entropy", "kl", "frac_reward_zero_std", "reward_std",
                "clip_ratio/region_mean")
_HEALTH_EVERY_STEP = 256  # rows written at every step
_HEALTH_WRITES = 128  # then about this many writes per doubling of the run
_CLASS: list[type] = []


def trial_callback(trial: Any, *, stop_on_collapse: bool = True, prune: bool = True) -> Any:
    """A ``transformers.TrainerCallback`` that reports a GRPO run to an Optuna trial.

    At every training log row (set ``logging_steps=1``) it reports the reward, carried forward
    over steps that log none (TRL logs ``reward`` only on generation steps), with
    ``trial.report(reward, step)``; feeds the shared instability rule
    (`advisor.instability.InstabilityDetector`); stores the health columns under
    ``"advisor:health"`` for `advisor.TrajectoryPruner`; stops training at the first collapse
    (``stop_on_collapse``); and raises ``optuna.TrialPruned`` when ``trial.should_prune()``
    (``prune``). At the end of training it sets ``advisor:collapsed``, ``advisor:unstable``
    and ``advisor:instability_reason`` (the end rule too), which
    `advisor.StableRegionSampler`'s online edge update reads.

    Args:
        trial: The ``optuna.Trial`` of this run.
        stop_on_collapse: Stop training when the instability rule fires.
        prune: Ask the study's pruner at every log row.

    Returns:
        A callback instance. After training, ``cb.rewards`` holds the carried-forward reward
        per logged row, ``cb.collapsed`` whether the rule fired, and ``cb.value(window)`` the
        mean reward of the last ``window`` rows (nan before any reward).

    Example:
        >>> import optuna
        >>> from advisor.pilot import trial_callback
        >>> def objective(trial):  # doctest: +SKIP
        ...     config = GRPOConfig(output_dir="out", logging_steps=1,
        ...                         learning_rate=trial.suggest_float("learning_rate", 1e-6,
        ...                                                           1e-3, log=True))
        ...     cb = trial_callback(trial)
        ...     GRPOTrainer(model=path, reward_funcs=funcs, args=config, train_dataset=ds,
        ...                 callbacks=[cb]).train()
        ...     return cb.value(10)
    """
    if not _CLASS:
        _CLASS.append(_make_class())
    return _CLASS[0](trial, stop_on_collapse=stop_on_collapse, prune=prune)


class _TrialReporter:
    """The callback's logic, free of transformers (tested without a trainer)."""

    def __init__(self, trial: Any, *, stop_on_collapse: bool = True, prune: bool = True) -> None:
        missing = [m for m in ("report", "should_prune", "set_user_attr")
                   if not callable(getattr(trial, m, None))]
        if missing:
            raise TypeError(f"`trial` must be an optuna.Trial (with {', '.join(missing)}), got "
                            f"{type(trial).__name__}. Pass the trial your objective receives.")
        for name, flag in (("stop_on_collapse", stop_on_collapse), ("prune", prune)):
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be True or False, got {flag!r}.")
        self.trial = trial
        self.stop_on_collapse = stop_on_collapse
        self.prune = prune
        self.detector = InstabilityDetector()
        self.rewards: list[float] = []
        self.history: list[dict[str, float]] = []
        self.health: dict[str, list[float | None]] = {k: [] for k in ("step", *_HEALTH_KEYS)}
        self.finished = False

    @property
    def collapsed(self) -> bool:
        """Whether the instability rule fired during training."""
        return self.detector.label is not None

    def value(self, window: int) -> float:
        """Mean carried-forward reward of the last ``window`` logged rows (nan if none)."""
        window = check_int("window", window, low=1)
        return float(statistics.fmean(self.rewards[-window:])) if self.rewards else math.nan

    def log_row(self, step: int, logs: Any) -> bool:
        """Handle one log row; True when training should stop (a collapse)."""
        if not logs or ("loss" not in logs and "reward" not in logs):
            return False
        row = {"step": step, **{key: float(v) for key, v in logs.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        r = row.get("reward")
        if r is not None and math.isfinite(r):
            self.rewards.append(r)
        elif self.rewards:
            self.rewards.append(self.rewards[-1])
        self.history.append(row)
        label = self.detector.update(row) if self.detector.label is None else None
        _set_health(self.trial, row, self.detector, self.health)
        if self.rewards:
            self.trial.report(self.rewards[-1], step)
        if label is not None:
            return self.stop_on_collapse
        if self.prune and self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at step {step}")
        return False

    def finish(self, error: str | None = None) -> None:
        """Write the outcome attributes (once; ``error``: the exception that ended training)."""
        if self.finished:
            return
        self.finished = True
        trial = self.trial
        if self.health["step"]:  # the rows since the last periodic write
            trial.set_user_attr("advisor:health", self.health)
        if error is not None:
            trial.set_user_attr("advisor:error", error)
        trial.set_user_attr("advisor:collapsed", error is not None or self.collapsed)
        if self.history and any("reward" in row for row in self.history):
            final = label_run(self.history, start_reward=None, error=error)  # the end rule
            trial.set_user_attr("advisor:unstable", final.unstable)
            trial.set_user_attr("advisor:instability_reason", final.reason)
        if self.detector.label is not None:
            trial.set_user_attr("advisor:collapse_reason", self.detector.label.reason)
            trial.set_user_attr("advisor:collapse_step", self.detector.label.step)


def _make_class() -> type:
    from transformers import TrainerCallback

    class TrialCallback(_TrialReporter, TrainerCallback):  # type: ignore[misc]
        """Reports a GRPO run to an Optuna trial (see `advisor.pilot.trial_callback`)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if state.is_world_process_zero and self.log_row(state.global_step, logs):
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                self.finish()

    return TrialCallback


def _set_health(trial: Any, row: Any, detector: InstabilityDetector,
                health: dict[str, list[float | None]]) -> None:
    """Health signals for `advisor.pruner.TrajectoryPruner`, under ``advisor:`` keys.

    ``"advisor:health"`` holds one column per TRL log key (None where a step did not log it),
    ``"advisor:start_reward"`` the start reward of the shared instability rule. The whole
    attribute is rewritten at each write, so after the first ``_HEALTH_EVERY_STEP`` rows it is
    written at about ``_HEALTH_WRITES`` evenly spaced rows per doubling of the run (and when the
    rule fires, and at the end): a row-per-step rewrite would cost O(steps^2) storage traffic
    (56 ms per step at 5,000 steps on SQLite). The detector itself sees every row.
    """
    for key, column in health.items():
        column.append(row.get(key))  # None where not logged; NaN/inf kept: they signal divergence
    n = len(health["step"])
    if (detector.label is not None or n <= _HEALTH_EVERY_STEP
            or n % -(-n // _HEALTH_WRITES) == 0):
        trial.set_user_attr("advisor:health", health)
        if math.isfinite(detector.start):
            trial.set_user_attr("advisor:start_reward", detector.start)

"""`AdvisorCallback`: the diagnostics live inside ``GRPOTrainer.train()``.

The class subclasses ``transformers.TrainerCallback``, so it is built on first use
(:func:`callback_class`) and importing `advisor.diagnostics` does not load transformers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from advisor.diagnostics._diagnose import _resolve_knobs
from advisor.diagnostics._diagnose import diagnose
from advisor.exceptions import AdvisorError
from advisor.instability import InstabilityDetector


_LOGGER = logging.getLogger("trl.advisor")
_CALLBACK_CLASS: list[type] = []


def callback_class() -> type:
    """The `AdvisorCallback` class (built once, on the first call)."""
    if not _CALLBACK_CLASS:
        _CALLBACK_CLASS.append(_make_callback_class())
    return _CALLBACK_CLASS[0]


def _make_callback_class() -> type:
    """Build AdvisorCallback on first use, so importing this module does not load transformers."""
    from transformers import TrainerCallback

    class AdvisorCallback(_LiveDiagnosis, TrainerCallback):  # type: ignore[misc]
        """Run the advisor's detectors live inside ``GRPOTrainer.train()``.

        On every training log row it feeds the shared instability rule, logs a warning through
        the ``trl.advisor`` logger when a rule fires or a new failure mode is diagnosed, and adds
        ``advisor/*`` metrics to the row (and to ``state.log_history``): the fitted reward
        trajectory's prediction, plateau and time constant, the model's stability margin, and
        ``advisor/unstable``. With ``stop_on_collapse=True`` it sets
        ``control.should_training_stop`` at the first firing of the instability rule.

        Args:
            model: Optional `StabilityModel` for the margin (needs ``config``).
            config: The run's GRPOConfig or knob mapping (default: the trainer's ``args``).
            start_reward: Reward before training (default: the first 3 logged rewards).
            stop_on_collapse: Stop training when the instability rule fires.
            diagnose_every: Run the full `diagnose` every this many steps (0 = never).
            fit_every: Refit the reward trajectory every this many steps (0 = never).
            **thresholds: Thresholds of `advisor.instability.InstabilityDetector`.

        Example:
            >>> from advisor.diagnostics import AdvisorCallback
            >>> cb = AdvisorCallback(stop_on_collapse=True)
            >>> cb.stopped_at is None
            True
        """

    return AdvisorCallback


class _LiveDiagnosis:
    """What `AdvisorCallback` does on ``on_train_begin`` and ``on_log``."""

    def __init__(self, *, model: Any = None, config: Any = None,
                 start_reward: float | None = None, stop_on_collapse: bool = False,
                 diagnose_every: int = 25, fit_every: int = 10,
                 **thresholds: Any) -> None:
        self.model, self.config = model, config
        self.start_reward, self.stop_on_collapse = start_reward, bool(stop_on_collapse)
        self.diagnose_every, self.fit_every = int(diagnose_every), int(fit_every)
        self.thresholds = thresholds
        self.detector = InstabilityDetector(start_reward=start_reward, **thresholds)
        self.rows: list[dict[str, Any]] = []
        self.stopped_at: int | None = None
        self.warned: set[str] = set()
        self._fit: Any = None
        self._margin = math.nan

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        config = self.config if self.config is not None else args
        if self.model is not None:
            try:
                knobs = _resolve_knobs(config, None)
                self._margin = float(self.model.margin(knobs.to_params()))
            except (AdvisorError, ValueError, TypeError) as exc:
                _LOGGER.warning("advisor: no stability margin for this config (%s)", exc)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
               **kwargs: Any) -> Any:
        if not logs or not any(k in logs for k in ("reward", "loss", "grad_norm")):
            return control  # eval rows and the final summary row
        row = {"step": int(state.global_step), **logs}
        if self.rows and row["step"] <= self.rows[-1]["step"]:
            return control
        self.rows.append(row)
        fired = self.detector.update(row)
        extra = self._metrics(row["step"])
        if fired is not None:
            _LOGGER.warning("advisor: instability at step %d (%s): %s", fired.step,
                            fired.reason, _short(fired.evidence))
            if self.stop_on_collapse:
                control.should_training_stop = True
                self.stopped_at = row["step"]
        self._maybe_diagnose(row["step"])
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == row["step"]:
            state.log_history[-1].update(extra)
        return control

    def _metrics(self, step: int) -> dict[str, float]:
        extra = {"advisor/unstable": float(self.detector.label is not None)}
        if math.isfinite(self._margin):
            extra["advisor/margin"] = self._margin
        if self.fit_every and step % self.fit_every == 0:
            self._fit = _quiet_fit(self.detector)
        if self._fit is not None:
            extra["advisor/predicted_reward"] = float(self._fit.predict([step - 1])[0][0])
            extra["advisor/plateau"] = float(self._fit.plateau)
            extra["advisor/time_constant"] = float(self._fit.time_constant)
        return extra

    def _maybe_diagnose(self, step: int) -> None:
        if not self.diagnose_every or step % self.diagnose_every != 0:
            return
        try:
            report = diagnose(self.rows, model=self.model, config=self.config,
                              start_reward=self.start_reward, nan_policy="omit")
        except (AdvisorError, ValueError) as exc:
            _LOGGER.warning("advisor: diagnosis skipped at step %d (%s)", step, exc)
            return
        for f in report.findings:
            if f.mode not in self.warned:
                self.warned.add(f.mode)
                _LOGGER.warning("advisor: %s (steps %d-%d, confidence %.2f): %s %s",
                                f.mode, *f.steps, f.confidence, f.recommendation,
                                dict(f.config_changes) or "")


def _quiet_fit(det: InstabilityDetector) -> Any:
    """Exponential fit of the rewards so far, or None while it is not identifiable."""
    from advisor.dynamics import fit_trajectory

    n = len(det.rewards)
    if n < 10:
        return None
    try:
        return fit_trajectory(det.rewards, steps=np.array(det.steps[-n:]) - 1,
                              models=("exponential",))
    except AdvisorError:
        return None


def _short(evidence: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in evidence.items())

"""One pilot run: a real ``GRPOTrainer`` run with a recording callback and step timing."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.exceptions import AdvisorError
from advisor.instability import InstabilityDetector
from advisor.instability import label_run
from advisor.pilot._checks import RewardFunctionError
from advisor.pilot._result import PilotRun


# Fields forced on every pilot run so that it measures what it claims (trl-optuna-notes §3).
_FORCED = dict(lr_scheduler_type="constant", warmup_steps=0, warmup_ratio=0.0, logging_steps=1,
               report_to="none", save_strategy="no", disable_tqdm=True, num_iterations=1,
               generation_batch_size=None, eval_strategy="no", push_to_hub=False)


def _pilot_config(args: Any, *, learning_rate: float, steps: int, seed: int, output_dir: Path,
                  batch_factor: int = 1, refresh: int = 1) -> Any:
    import torch

    changes = dict(_FORCED, learning_rate=learning_rate, max_steps=steps, seed=seed,
                   output_dir=str(output_dir),
                   steps_per_generation=args.gradient_accumulation_steps * refresh,
                   per_device_train_batch_size=args.per_device_train_batch_size * batch_factor)
    if not torch.cuda.is_available():
        changes.update(use_cpu=True, bf16=False, fp16=False)
    changes = {k: v for k, v in changes.items() if hasattr(args, k)}
    return dataclasses.replace(args, **changes)


class _Recorder:
    """TrainerCallback body: rows per step, step timing, online instability stop.

    ``step_times`` holds the wall time of every optimizer step, ``train_times`` the same minus
    the generate call made inside that step (``pending_generation``, set by the timing hook),
    ``gen_times`` the wall time of every generate + scoring call.
    """

    def __init__(self, start_reward: float | None, stop_on_collapse: bool) -> None:
        self.rows: dict[int, dict[str, float]] = {}
        self.step_times: list[float] = []
        self.train_times: list[float] = []
        self.gen_times: list[float] = []
        self.pending_generation = 0.0
        self.detector = InstabilityDetector(start_reward=start_reward)
        self.stop_on_collapse = stop_on_collapse
        self._last = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if not logs or ("loss" not in logs and "reward" not in logs):
            return  # the final train_runtime summary row
        row = self.rows.setdefault(state.global_step, {"step": state.global_step})
        row.update({k: float(v) for k, v in logs.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if self.detector.label is None and self.detector.update(dict(row)) is not None \
                and self.stop_on_collapse:
            control.should_training_stop = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        now = time.perf_counter()
        self.step_times.append(now - self._last)
        self.train_times.append(now - self._last - self.pending_generation)
        self.pending_generation = 0.0
        self._last = now


def _callback_class() -> Any:
    from transformers import TrainerCallback

    class _RecorderCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self, rec: _Recorder) -> None:
            self.rec = rec

        def on_log(self, *a: Any, **k: Any) -> None:
            self.rec.on_log(*a, **k)

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.rec.on_step_end(*a, **k)

    return _RecorderCallback


def _carried_rewards(rows: Sequence[Mapping[str, float]]) -> list[float]:
    out: list[float] = []
    for row in rows:
        r = row.get("reward")
        if r is not None and math.isfinite(r):
            out.append(float(r))
        elif out:
            out.append(out[-1])
    return out


def _train_once(spec: dict[str, Any], ctx: dict[str, Any]) -> tuple[PilotRun, list[dict]]:
    """Run one GRPOTrainer run; exceptions from training are part of the result."""
    import torch
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOTrainer

    cfg = _pilot_config(ctx["args"], learning_rate=spec["learning_rate"], steps=spec["steps"],
                        seed=spec["seed"], output_dir=ctx["output_dir"] / "trainer",
                        batch_factor=spec["batch_factor"], refresh=spec.get("refresh", 1))
    rec = _Recorder(ctx["start_reward"], stop_on_collapse=spec["purpose"] != "stiffness")
    threads = torch.get_num_threads()
    if ctx["n_threads"]:
        torch.set_num_threads(ctx["n_threads"])
    hf_logging.disable_progress_bar()  # "Loading weights" bars, once per run
    t0 = time.perf_counter()
    error = None
    try:
        trainer = GRPOTrainer(model=ctx["model"], reward_funcs=ctx["reward_funcs"], args=cfg,
                              train_dataset=ctx["train_dataset"],
                              processing_class=ctx["processing_class"],
                              callbacks=[_callback_class()(rec)])
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        _time_generation(trainer, rec)
        rec._last = time.perf_counter()
        trainer.train()
    except RewardFunctionError:
        raise
    except Exception as exc:  # NaN probabilities in sampling and the like: a collapse
        error = f"{type(exc).__name__}: {exc}"[:400]
    finally:
        torch.set_num_threads(threads)
        hf_logging.enable_progress_bar()
    seconds = time.perf_counter() - t0
    rows = [rec.rows[s] for s in sorted(rec.rows)]
    if not rows or not _carried_rewards(rows):
        if error is None:
            raise AdvisorError(f"The run at lr={spec['learning_rate']:g} logged no reward. "
                               "Check that `reward_funcs` work on your dataset.")
        rows = rows or [{"step": 1, "reward": float("nan")}]
    label = label_run(rows, start_reward=ctx["start_reward"], error=error)
    # the first step and the first generate call warm up (allocations, caches): left out
    times, train = rec.step_times[1:] or rec.step_times, rec.train_times[1:] or rec.train_times
    gens = rec.gen_times[1:] or rec.gen_times
    run = PilotRun(
        name=spec["name"], purpose=spec["purpose"], learning_rate=spec["learning_rate"],
        seed=spec["seed"], samples_per_step=spec["samples_per_step"],
        target_steps=spec["steps"], steps_done=len(rec.step_times), unstable=label.unstable,
        reason=label.reason, unstable_step=label.step, error=error, seconds=seconds,
        seconds_per_step=statistics.median(times) if times else None,
        seconds_per_generation=statistics.median(gens) if gens else None,
        seconds_per_train_step=statistics.median(train) if train else None,
        rewards=tuple(_carried_rewards(rows)), refresh_interval=spec.get("refresh", 1))
    return run, rows


def _time_generation(trainer: Any, rec: _Recorder) -> None:
    """Time TRL's generation + scoring call (private in TRL 1.16; skipped if absent)."""
    original = getattr(trainer, "_generate_and_score_completions", None)
    if original is None:
        return

    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = original(*a, **k)
        seconds = time.perf_counter() - t
        rec.gen_times.append(seconds)
        rec.pending_generation += seconds
        return out

    trainer._generate_and_score_completions = timed


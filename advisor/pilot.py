"""Real GRPO pilot: measure stiffness, the stability edge and timing with TRL's ``GRPOTrainer``.

The closed form predicts the mean-reward trajectory of stable runs but not where real runs
collapse (10-50x lower, set by gradient noise; real-trl-findings.md sections 4 and 6), so the
pilot **measures** the edge on the user's own model, task, batch and group size:

1. **Edge scan** (on-policy, the user's optimizer, batch and group size): a ladder of
   learning rates ``lr_ratio`` apart, started at ``lr_ratio`` x the user's lr and walked down
   to the first stable level (or up while stable), then ``n_refine`` bisections in log lr, all
   with short runs (``scan_steps``) of the first seed. The stable end is then confirmed with
   every seed (>= 2) over the full horizon (``horizon_steps``, default the planned steps) and
   moved down while any seed collapses. Every run stops as soon as the shared instability rule
   fires (`advisor.instability.InstabilityDetector`), so collapsed runs cost a few steps and
   most of the budget goes to the long runs next to the edge (successive-halving style).
2. **Stiffness** from on-policy curves at lo/2 and lo/4 (below the saturation near the edge;
   the rate must be linear in lr and the result says when it is not), in heavy-ball units
   (SGD: rate x (1 - mu) / lr; AdamW: no beta1 factor), via `advisor.stiffness`.
3. The edge in the dimensionless rate ``x = lr K / (1 - mu_hb)`` as an
   `advisor.stability.EdgeEstimate`; optionally a second scan at another samples-per-step to
   measure the batch exponent; timing per optimizer step and per generation.

Every finished run is kept in ``output_dir/runs`` (JSON + CSV), so an interrupted pilot
resumes where it stopped. torch, transformers and trl are imported inside functions.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor.exceptions import AdvisorError
from advisor.exceptions import AdvisorWarning
from advisor.instability import InstabilityDetector
from advisor.instability import label_run
from advisor.knobs import knobs_from_config
from advisor.knobs import to_grpo_kwargs


if TYPE_CHECKING:
    import optuna
    from trl import GRPOConfig

    from advisor.stability import EdgeEstimate
    from advisor.stability import StabilityModel
    from advisor.stiffness import StiffnessEstimate

__all__ = ["PilotResult", "PilotRun", "RewardFunctionError", "make_objective", "run_pilot"]

Purpose = Literal["scan", "stiffness", "batch", "refresh"]
_MIN_HORIZON = 20  # steps: the instability rule needs a 30-step window to be meaningful
# Fields forced on every pilot run so that it measures what it claims (trl-optuna-notes §3).
_FORCED = dict(lr_scheduler_type="constant", warmup_steps=0, warmup_ratio=0.0, logging_steps=1,
               report_to="none", save_strategy="no", disable_tqdm=True, num_iterations=1,
               generation_batch_size=None, eval_strategy="no", push_to_hub=False)


class RewardFunctionError(AdvisorError, ValueError):
    """A reward function returned None/NaN or a non-number for a completion."""


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class PilotRun:
    """One real GRPO run of the pilot.

    Attributes:
        name: File stem under ``output_dir/runs``.
        purpose: ``"scan"`` (edge), ``"stiffness"``, ``"batch"`` or ``"refresh"`` (second
            points in samples per step or refresh interval).
        learning_rate: Constant learning rate.
        seed: Trainer seed.
        samples_per_step: Completions per optimizer step.
        target_steps: Planned optimizer steps.
        steps_done: Optimizer steps run (fewer when stopped at a collapse).
        unstable: Label of `advisor.instability.label_run`.
        reason: Its reason (``"stable"``, ``"drop_from_peak"``, ...).
        unstable_step: Step at which the rule fired (None if stable).
        error: The exception message if the run raised.
        seconds: Wall time of the run including trainer set-up.
        seconds_per_step: Median wall time of an optimizer step (generation included).
        seconds_per_generation: Mean wall time of one generation + scoring call.
        rewards: Mean reward per optimizer step, carried forward over steps without one.
        refresh_interval: K_ref of the run (optimizer steps per generation; 1 = on-policy).

    Example:
        >>> run = PilotRun(name="r", purpose="scan", learning_rate=1e-3, seed=0,
        ...                samples_per_step=64, target_steps=50, steps_done=50, unstable=False,
        ...                reason="stable", unstable_step=None, error=None, seconds=2.0,
        ...                seconds_per_step=0.04, seconds_per_generation=0.02,
        ...                rewards=(0.3, 0.4))
        >>> run.rose
        True
    """

    name: str
    purpose: Purpose
    learning_rate: float
    seed: int
    samples_per_step: int
    target_steps: int
    steps_done: int
    unstable: bool
    reason: str
    unstable_step: int | None
    error: str | None
    seconds: float
    seconds_per_step: float | None
    seconds_per_generation: float | None
    rewards: tuple[float, ...]
    refresh_interval: int = 1

    @property
    def rose(self) -> bool:
        """Whether the reward ended above where it started."""
        return len(self.rewards) >= 2 and self.rewards[-1] > self.rewards[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (rewards as a list)."""
        out = dataclasses.asdict(self)
        out["rewards"] = list(self.rewards)
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class PilotResult:
    """What the pilot measured, and how much it cost.

    Attributes:
        stiffness: `advisor.stiffness.StiffnessEstimate` (K per unit lr, heavy-ball units).
        edge: `advisor.stability.EdgeEstimate` in ``x = lr K / (1 - mu_hb)``.
        edge_learning_rate: ``(low, point, high)`` of the edge in learning-rate units.
        optimizer: ``"sgd"`` or ``"adamw"``; momentum: heavy-ball mu (0 for AdamW).
        samples_per_step: Completions per optimizer step of the scan.
        num_generations: G of the scan.
        planned_steps: Length of the user's planned run.
        horizon_steps: Length of the confirmation runs (the edge holds up to this length).
        budget_steps: Budget in optimizer steps (default 3 x planned_steps).
        cost_steps: Optimizer steps actually run (resumed runs included).
        cost_seconds: Wall time of all runs.
        seconds_per_step: Median seconds per on-policy optimizer step (generation included).
        seconds_per_generation: Median seconds per generation + scoring call.
        linear: Whether the rate was linear in the learning rate (stiffness check).
        start_reward: Mean reward of the starting policy (first logged step of every run).
        runs: Every run, in the order run.
        histories: Per-step logged metrics of every run (name -> rows).
        message: Caveats (empty if none).

    Example:
        >>> PilotResult.__name__
        'PilotResult'
    """

    stiffness: StiffnessEstimate
    edge: EdgeEstimate
    edge_learning_rate: tuple[float, float, float]
    optimizer: str
    momentum: float
    samples_per_step: int
    num_generations: int
    planned_steps: int
    horizon_steps: int
    budget_steps: int
    cost_steps: int
    cost_seconds: float
    seconds_per_step: float | None
    seconds_per_generation: float | None
    linear: bool
    start_reward: float
    runs: tuple[PilotRun, ...]
    histories: Mapping[str, Sequence[Mapping[str, float]]] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)
    message: str = ""

    def model(self, **kwargs: Any) -> StabilityModel:
        """The calibrated `advisor.stability.StabilityModel` (theory + measured edge).

        Args:
            **kwargs: Extra keyword arguments of ``StabilityModel`` (e.g. ``safety``).
        """
        from advisor.stability import StabilityModel

        return StabilityModel(self.stiffness, edge=self.edge, **kwargs)

    def history(self, name: str) -> Any:
        """Per-step metrics of one run as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame(list(self.histories[name]))

    def save(self, path: str | Path) -> Path:
        """Write ``pilot.json`` (summary, edge, runs) and ``history.csv`` into folder ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        summary = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("stiffness", "edge", "runs", "histories")}
        summary["edge"] = dataclasses.asdict(self.edge)
        summary["runs"] = [r.to_dict() for r in self.runs]
        summary["stiffness_value"] = self.stiffness.stiffness
        summary["stiffness_std_error"] = self.stiffness.std_error
        (folder / "pilot.json").write_text(json.dumps(summary, indent=1, default=_jsonable))
        _write_histories(folder / "history.csv", self.histories)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> PilotResult:
        """Read a folder written by `save` (the stiffness is re-estimated from the curves)."""
        from advisor.stability import EdgeEstimate

        folder = Path(path)
        data = json.loads((folder / "pilot.json").read_text())
        runs = tuple(PilotRun(**{**r, "rewards": tuple(r["rewards"])}) for r in data.pop("runs"))
        edge = EdgeEstimate(**data.pop("edge"))
        data.pop("stiffness_value"), data.pop("stiffness_std_error")
        stiff = _estimate(runs, data["optimizer"], data["momentum"])[0]
        data["edge_learning_rate"] = tuple(data["edge_learning_rate"])
        return cls(stiffness=stiff, edge=edge, runs=runs,
                   histories=_read_histories(folder / "history.csv"), **data)


def _jsonable(value: Any) -> Any:
    return float(value) if hasattr(value, "__float__") else str(value)


def _write_histories(path: Path, histories: Mapping[str, Sequence[Mapping[str, float]]]) -> None:
    keys = sorted({k for rows in histories.values() for row in rows for k in row} - {"step"})
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", "step", *keys])
        for name, rows in histories.items():
            for row in rows:
                writer.writerow([name, row["step"], *(row.get(k, "") for k in keys)])


def _read_histories(path: Path) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    if not path.exists():
        return out
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            name = row.pop("run")
            out.setdefault(name, []).append(
                {k: (int(v) if k == "step" else float(v)) for k, v in row.items() if v != ""})
    return out


# ------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------
def _check_dataset(train_dataset: Any) -> None:
    columns = getattr(train_dataset, "column_names", None)
    if columns is None:
        raise TypeError(f"`train_dataset` must be a datasets.Dataset, got "
                        f"{type(train_dataset).__name__}.")
    if "prompt" not in columns:
        raise ValueError(
            f"`train_dataset` must have a 'prompt' column, got columns {list(columns)!r}. "
            "GRPOTrainer reads prompts from it: rename your text column with "
            "dataset.rename_column(old, 'prompt').")


def _check_batch(args: Any) -> int:
    """Completions per optimizer step; must hold whole groups for an on-policy pilot."""
    world = int(getattr(args, "world_size", 1) or 1)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    if per_step % args.num_generations:
        raise ValueError(
            f"`per_device_train_batch_size * gradient_accumulation_steps * num_processes` must be "
            f"a multiple of num_generations={args.num_generations} for an on-policy pilot, got "
            f"{args.per_device_train_batch_size} * {args.gradient_accumulation_steps} * {world} "
            f"= {per_step}. Set per_device_train_batch_size to a multiple of num_generations.")
    return per_step


def _check_reward_value(func_name: str, values: Any, n: int) -> list[Any]:
    if values is None or len(values) != n:
        raise RewardFunctionError(
            f"`reward_funcs` must return one float per completion, got "
            f"{'None' if values is None else len(values)} values from {func_name!r} for {n} "
            "completions.")
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok and not (hasattr(v, "item") and math.isfinite(float(v.item()))):
            raise RewardFunctionError(
                f"`reward_funcs` must return a finite float for every completion, got {v!r} from "
                f"{func_name!r} at index {i}. Return 0.0 (not None or NaN) for a wrong or "
                "unparsable completion; the pilot needs a reward on every sample.")
    return list(values)


def _wrap_reward(func: Any) -> Any:
    """Check a callable reward function's output on every call (keeps its ``__name__``)."""
    if not callable(func) or isinstance(func, str) or hasattr(func, "forward") \
            or inspect.iscoroutinefunction(func):
        return func
    name = getattr(func, "__name__", type(func).__name__)

    def checked(prompts: Any, completions: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return _check_reward_value(name, func(prompts, completions, *args, **kwargs),
                                   len(completions))

    checked.__name__ = name
    return checked


def _optimizer_of(args: Any) -> tuple[str, float]:
    knobs = knobs_from_config(args)
    return knobs.optimizer, knobs.heavy_ball_momentum


# ------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------
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
    """TrainerCallback body: rows per step, step timing, online instability stop."""

    def __init__(self, start_reward: float | None, stop_on_collapse: bool) -> None:
        self.rows: dict[int, dict[str, float]] = {}
        self.step_times: list[float] = []
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
    gen_times: list[float] = []
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
        _time_generation(trainer, gen_times)
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
    times = rec.step_times[1:] or rec.step_times
    run = PilotRun(
        name=spec["name"], purpose=spec["purpose"], learning_rate=spec["learning_rate"],
        seed=spec["seed"], samples_per_step=spec["samples_per_step"],
        target_steps=spec["steps"], steps_done=len(rec.step_times), unstable=label.unstable,
        reason=label.reason, unstable_step=label.step, error=error, seconds=seconds,
        seconds_per_step=statistics.median(times) if times else None,
        seconds_per_generation=statistics.fmean(gen_times) if gen_times else None,
        rewards=tuple(_carried_rewards(rows)), refresh_interval=spec.get("refresh", 1))
    return run, rows


def _time_generation(trainer: Any, sink: list[float]) -> None:
    """Time TRL's generation + scoring call (private in TRL 1.16; skipped if absent)."""
    original = getattr(trainer, "_generate_and_score_completions", None)
    if original is None:
        return

    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = original(*a, **k)
        sink.append(time.perf_counter() - t)
        return out

    trainer._generate_and_score_completions = timed


# ------------------------------------------------------------------------------------------
# the scan
# ------------------------------------------------------------------------------------------
class _BudgetExhausted(Exception):
    pass


class _Scan:
    """Runs (or reloads) pilot runs, keeps the budget and the progress bar."""

    def __init__(self, ctx: dict[str, Any], budget: int, progress: bool) -> None:
        self.ctx = ctx
        self.budget = budget
        self.limit = budget  # steps the current phase may spend up to (forced runs excepted)
        self.runs: list[PilotRun] = []
        self.histories: dict[str, list[dict]] = {}
        self.cost = 0
        self.force = False
        self.bar = _progress_bar(budget) if progress else None

    def run(self, purpose: Purpose, lr: float, seed: int, steps: int, batch_factor: int = 1,
            refresh: int = 1) -> PilotRun:
        per_step = self.ctx["samples_per_step"] * batch_factor
        name = f"{purpose}-lr{lr:.6g}-s{seed}-b{per_step}-h{steps}"
        name += f"-k{refresh}" if refresh > 1 else ""
        folder = self.ctx["output_dir"] / "runs"
        if name in self.histories:  # already run in this pilot (a confirmation level)
            return next(r for r in self.runs if r.name == name)
        if (folder / f"{name}.json").exists():  # resume: a finished run is never redone
            data = json.loads((folder / f"{name}.json").read_text())
            run = PilotRun(**{**data, "rewards": tuple(data["rewards"])})
            rows = _read_histories(folder / f"{name}.csv").get(name, [])
        else:
            if not self.force and self.cost + steps > self.limit:
                raise _BudgetExhausted
            spec = dict(name=name, purpose=purpose, learning_rate=lr, seed=seed, steps=steps,
                        batch_factor=batch_factor, refresh=refresh, samples_per_step=per_step)
            run, rows = _train_once(spec, self.ctx)
            folder.mkdir(parents=True, exist_ok=True)
            _write_histories(folder / f"{name}.csv", {name: rows})
            tmp = folder / f"{name}.json.tmp"
            tmp.write_text(json.dumps(run.to_dict(), default=_jsonable))
            tmp.replace(folder / f"{name}.json")
        self.runs.append(run)
        self.histories[name] = rows
        self.cost += run.steps_done
        # p0 of the shared rule: the first logged reward of every run samples the start policy
        starts = [r.rewards[0] for r in self.runs if r.rewards and math.isfinite(r.rewards[0])]
        if starts:
            self.ctx["start_reward"] = statistics.fmean(starts)
        if self.bar is not None:
            self.bar(run, self.cost)
        return run

    def level(self, purpose: Purpose, lr: float, steps: int, batch_factor: int = 1,
              refresh: int = 1, *, seeds: Sequence[int]) -> bool:
        """Seeds at one lr; stops at the first unstable seed. True if all stable."""
        for seed in seeds:
            if self.run(purpose, lr, seed, steps, batch_factor, refresh).unstable:
                return False
        return True


def _progress_bar(total: int) -> Callable[[PilotRun, int], None]:
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="pilot", unit="step", file=sys.stderr)

        def update(run: PilotRun, cost: int) -> None:
            bar.update(max(0, min(cost, total) - bar.n))
            bar.set_postfix_str(f"lr={run.learning_rate:.3g} s{run.seed} {run.reason}")

        return update
    except ImportError:  # pragma: no cover - tqdm ships with transformers
        def write(run: PilotRun, cost: int) -> None:
            print(f"pilot {cost}/{total} steps: lr={run.learning_rate:.3g} seed={run.seed} "
                  f"{run.reason}", file=sys.stderr)

        return write


def _bracket(scan: _Scan, purpose: Purpose, start_lr: float, ratio: float, n_levels: int,
             n_refine: int, steps: tuple[int, int], batch_factor: int = 1, refresh: int = 1
             ) -> tuple[float, float, bool]:
    """Bracket the edge in lr: ladder, bisection, then confirmation with every seed.

    The ladder and the bisection run the first seed for ``steps[0]`` steps; the stable end of
    the bracket is then confirmed with every seed over the full horizon ``steps[1]`` and moved
    down while any of them collapses. Collapsed runs stop early, so most of the budget goes to
    the long runs next to the edge (successive-halving style). The flag says whether the
    unstable end collapsed at the full horizon (else it comes from short runs only).
    """
    first = scan.ctx["seeds"][:1]

    def level(lr: float, seeds: Sequence[int] = first, n: int = steps[0]) -> bool:
        return scan.level(purpose, lr, n, batch_factor, refresh, seeds=seeds)

    lo = hi = math.nan
    if level(start_lr):
        lo = start_lr
        for _ in range(n_levels):  # walk up while stable
            if not level(lo * ratio):
                hi = lo * ratio
                break
            lo *= ratio
    else:
        hi = start_lr
        for _ in range(n_levels):  # walk down; collapsed runs stop early, so this is cheap
            if level(hi / ratio):
                lo = hi / ratio
                break
            hi /= ratio
    if math.isnan(lo) or math.isnan(hi):
        found = "unstable" if math.isnan(hi) else "stable"
        raise AdvisorError(
            f"The learning-rate scan found no {found} level within {n_levels} levels x{ratio:g} "
            f"from lr={start_lr:g}. Set `args.learning_rate` near the range you plan to use, or "
            "raise `n_levels`.")
    try:
        for _ in range(n_refine):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if level(mid) else (lo, mid)
    except _BudgetExhausted:
        _warn("the budget ran out while refining the edge bracket; it is wider than "
                      "asked (raise `budget_steps` for a sharper edge).")
    scan.force = True  # the confirmation runs even past the budget: it guards the verdict
    step = math.sqrt(hi / lo)
    hi_full = False
    for _ in range(n_levels):  # confirm: every seed must survive at the stable end
        if level(lo, scan.ctx["seeds"], steps[1]):
            scan.force = False
            return lo, hi, hi_full
        # first down by the bisection step; a second failure means the short runs were far
        # off, so then by the ladder's half step
        lo, hi, step, hi_full = lo / step, lo, max(step, math.sqrt(ratio)), True
    raise AdvisorError(f"No learning rate above {lo:g} was stable for every seed; the edge is "
                       "dominated by seed noise. Raise the batch size or use more seeds.")


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, AdvisorWarning, stacklevel=3)


def _estimate(runs: Sequence[PilotRun], optimizer: str, momentum: float
              ) -> tuple[Any, list[PilotRun]]:
    """Stiffness from the stable on-policy curves at the stiffness runs' learning rates.

    Only curves at or below the largest stiffness-run lr are used: closer to the edge the
    rate saturates and K per unit lr falls (real-trl-findings.md section 2).
    """
    from advisor.stiffness import PilotCurve
    from advisor.stiffness import estimate_stiffness

    # a stiffness run that merely rose too little ("no_net_gain") still carries its rate
    base = [r for r in runs if len(r.rewards) >= 10 and (
        (r.purpose == "scan" and not r.unstable)
        or (r.purpose == "stiffness" and r.reason in ("stable", "no_net_gain")))]
    stiff_lrs = [r.learning_rate for r in runs if r.purpose == "stiffness"]
    max_lr = max(stiff_lrs) * 1.0001 if stiff_lrs else math.inf
    used = [r for r in base if r.learning_rate <= max_lr] or base
    curves = [PilotCurve(rewards=list(r.rewards), learning_rate=r.learning_rate,
                         momentum=momentum, optimizer=optimizer, refresh_interval=1,
                         samples_per_step=r.samples_per_step, seed=r.seed) for r in used]
    return estimate_stiffness(curves), used


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------
def run_pilot(
    model: Any,
    reward_funcs: Any,
    train_dataset: Any,
    args: GRPOConfig,
    *,
    processing_class: Any = None,
    planned_steps: int | None = None,
    budget_steps: int | None = None,
    seeds: Sequence[int] = (0, 1),
    output_dir: str | Path = "grpo-advisor-pilot",
    horizon_steps: int | None = None,
    scan_steps: int | None = None,
    lr_ratio: float = 4.0,
    n_levels: int = 6,
    n_refine: int = 2,
    batch_factor: int | None = None,
    refresh_interval: int | None = None,
    n_threads: int | None = 1,
    progress: bool = True,
) -> PilotResult:
    """Measure stiffness, stability edge and timing with real ``GRPOTrainer`` runs.

    Args:
        model: Model path or ``PreTrainedModel`` (an object is saved once to
            ``output_dir/init_model`` so every run starts from the same weights, and so that
            ``beta > 0`` works).
        reward_funcs: As for ``GRPOTrainer``; callables are checked to return a finite float
            for every completion.
        train_dataset: ``datasets.Dataset`` with a ``prompt`` column.
        args: The planned ``GRPOConfig``: its optimizer, batch, group size and lr are scanned
            around; scheduler, logging and refresh are overridden (on-policy, constant lr).
        processing_class: Tokenizer (required when ``model`` is an object).
        planned_steps: Steps of the planned run (default ``args.max_steps``).
        budget_steps: Budget in optimizer steps (default 3 x planned_steps).
        seeds: Seeds per scan level (at least 2).
        output_dir: Folder for runs (reused to resume an interrupted pilot).
        horizon_steps: Length of the confirmation runs that certify the stable end of the
            bracket with every seed (default: planned_steps, or less if the budget is short).
            Collapses are rare events, so the edge holds for runs up to this length.
        scan_steps: Length of the ladder and bisection runs (default horizon_steps / 4).
        lr_ratio: Ratio between ladder levels (> 1).
        n_levels: Maximum ladder levels walked from the start lr.
        n_refine: Bisections of the bracket (each halves its log width).
        batch_factor: If set (integer >= 2), a second scan at ``batch_factor`` x the
            completions per step measures the batch exponent of the edge.
        refresh_interval: If set (integer >= 2), a second scan with
            ``steps_per_generation = refresh_interval x gradient_accumulation_steps`` measures
            the refresh exponent of the edge.
        n_threads: torch threads inside runs (1 is fastest for tiny models; None: unchanged).
        progress: Show a progress bar on stderr.

    Returns:
        `PilotResult`; ``result.model()`` is the calibrated stability model.

    Raises:
        ValueError: No ``prompt`` column, batch not holding whole groups, budget too small.
        RewardFunctionError: A reward function returned None/NaN.
        AdvisorError: The scan found no edge.

    Example:
        >>> from advisor.tasks import builtin_task, default_config  # doctest: +SKIP
        >>> task = builtin_task()  # doctest: +SKIP
        >>> res = run_pilot(task.model_path, list(task.reward_funcs), task.train_dataset,
        ...                 default_config("out"),
        ...                 processing_class=task.tokenizer)  # doctest: +SKIP
        >>> res.edge.low < res.edge.high  # doctest: +SKIP
        True
    """
    _check_dataset(train_dataset)
    samples_per_step = _check_batch(args)
    optimizer, momentum = _optimizer_of(args)
    seeds = tuple(check_int("seeds", s, low=0) for s in seeds)
    if len(set(seeds)) < 2:
        raise ValueError(f"`seeds` must hold at least 2 distinct seeds, got {seeds!r}. The edge "
                         "is a rare-event threshold: one seed cannot bracket it.")
    if planned_steps is None:
        planned_steps = args.max_steps
    planned = check_int("planned_steps", planned_steps, low=1,
                        hint="Pass planned_steps= or set args.max_steps.")
    budget = check_int("budget_steps", 3 * planned if budget_steps is None else budget_steps,
                       low=1)
    horizon = check_int("horizon_steps", horizon_steps if horizon_steps is not None else min(
        planned, max(_MIN_HORIZON, (budget - 2 * _MIN_HORIZON) // len(seeds))),
        low=_MIN_HORIZON)
    short = check_int("scan_steps", scan_steps if scan_steps is not None
                      else max(_MIN_HORIZON, horizon // 4), low=_MIN_HORIZON)
    ratio = check_interval("lr_ratio", lr_ratio, low=1.0, low_closed=False)
    need = len(seeds) * horizon + 2 * short
    if budget < need:
        raise ValueError(
            f"`budget_steps` must be at least len(seeds) * horizon_steps + 2 * scan_steps = "
            f"{need} for a scan, got {budget}. Raise budget_steps or lower horizon_steps "
            f"(>= {_MIN_HORIZON}).")
    second = {"batch": (check_int("batch_factor", batch_factor, low=2), 1)
              if batch_factor is not None else None,
              "refresh": (1, check_int("refresh_interval", refresh_interval, low=2))
              if refresh_interval is not None else None}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = dict(args=args, model=_model_source(model, processing_class, out),
               reward_funcs=[_wrap_reward(f) for f in (
                   reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs])],
               train_dataset=train_dataset, processing_class=processing_class, output_dir=out,
               samples_per_step=samples_per_step, seeds=seeds, n_threads=n_threads,
               start_reward=None)
    scan = _Scan(ctx, budget, progress)
    scan.limit = budget - 2 * short  # keep two short stiffness runs' worth for phase 2
    try:
        lo, hi, hi_full = _bracket(scan, "scan", args.learning_rate * ratio, ratio, n_levels,
                                   n_refine, (short, horizon))
    except _BudgetExhausted:
        raise ValueError(
            f"`budget_steps` must cover a scan that reaches the edge, got {budget} (spent "
            f"{scan.cost} without bracketing it). Raise budget_steps, lower horizon_steps, or "
            "start closer to the edge with args.learning_rate.") from None
    scan.limit = budget - 2 * short
    brackets = _second_points(scan, lo, hi, second, ratio, n_levels, n_refine, (short, horizon))
    # stiffness: on-policy curves at lo/2 and lo/4, below the saturation that sets in above
    # about half the edge (real-trl-findings.md section 6.5); two rates check linearity. They
    # run even past the budget (at least scan_steps each), and the overrun is reported.
    stiff_steps = min(horizon, max(short, (budget - scan.cost) // 2))
    scan.force = True
    for lr in (lo / 2, lo / 4):
        scan.run("stiffness", lr, seeds[0], stiff_steps)
    scan.force = False
    stiff, used = _estimate(scan.runs, optimizer, momentum)
    edge = _edge(scan, stiff.stiffness, lo, hi, hi_full, optimizer, momentum, samples_per_step,
                 horizon)
    if brackets:
        from advisor.stability import EdgeEstimate

        edge = EdgeEstimate.combine([edge] + [dataclasses.replace(
            _edge(scan, stiff.stiffness, lo2, hi2, full2, optimizer, momentum,
                  samples_per_step * factor, horizon, purpose=purpose),
            refresh_interval=float(refresh))
            for purpose, (factor, refresh), (lo2, hi2, full2) in brackets])
    return _result(scan, stiff, edge, (lo, _point(lo, hi, hi_full), hi), optimizer, momentum,
                   args, planned, horizon, budget)


def _model_source(model: Any, processing_class: Any, out: Path) -> Any:
    if isinstance(model, (str, Path)):
        return str(model)
    if processing_class is None:
        raise ValueError("`processing_class` must be given when `model` is a model object, got "
                         "None. Pass the tokenizer, or pass a saved model folder as `model`.")
    folder = out / "init_model"
    if not (folder / "config.json").exists():
        model.save_pretrained(folder)
        processing_class.save_pretrained(folder)
    return str(folder)


def _rate(lr: float, k: float, momentum: float) -> float:
    return lr * k / (1.0 - momentum)


def _point(lo: float, hi: float, hi_full: bool) -> float:
    """Point estimate of the edge at the full horizon.

    A collapse is a first-passage event, so an lr that collapsed in a short run collapses in a
    long one too, but one that survived a short run may not survive a long one: an unstable end
    seen only in short runs is an upper bound, and the point estimate is then the confirmed
    stable end. With a full-horizon collapse the edge lies inside the bracket: its log centre.
    """
    return math.sqrt(lo * hi) if hi_full else lo


def _edge(scan: _Scan, k: float, lo: float, hi: float, hi_full: bool, optimizer: str,
          momentum: float, samples_per_step: int, horizon: int, purpose: str = "scan"
          ) -> EdgeEstimate:
    from advisor.stability import EdgeEstimate

    return EdgeEstimate(rate=_rate(_point(lo, hi, hi_full), k, momentum),
                        low=_rate(lo, k, momentum), high=_rate(hi, k, momentum),
                        samples_per_step=samples_per_step, refresh_interval=1,
                        horizon_steps=horizon, optimizer=optimizer,  # type: ignore[arg-type]
                        n_runs=sum(r.purpose == purpose for r in scan.runs))


def _second_points(scan: _Scan, lo: float, hi: float,
                   points: Mapping[str, tuple[int, int] | None], ratio: float, n_levels: int,
                   n_refine: int, steps: tuple[int, int]
                   ) -> list[tuple[str, tuple[int, int], tuple]]:
    """Edge brackets (in lr) at another batch or refresh interval, for the exponents."""
    out: list[tuple[str, tuple[int, int], tuple]] = []
    for purpose, cond in points.items():
        if cond is None:
            continue
        factor, refresh = cond
        try:  # start above the expected edge: batch exponent <= 1, refresh exponent ~0
            found = _bracket(scan, purpose, math.sqrt(lo * hi) * factor, ratio, n_levels,
                             n_refine, steps, batch_factor=factor, refresh=refresh)
        except (_BudgetExhausted, AdvisorError) as exc:
            scan.force = False
            _warn(f"the second {purpose} point found no edge ({exc or 'budget exhausted'}); "
                  "its exponent keeps the conservative default (raise budget_steps).")
            continue
        out.append((purpose, cond, found))
    return out


def _result(scan: _Scan, stiff: Any, edge: EdgeEstimate, edge_lr: tuple[float, float, float],
            optimizer: str, momentum: float, args: Any, planned: int, horizon: int,
            budget: int) -> PilotResult:
    runs = scan.runs
    on_policy = [r.seconds_per_step for r in runs if r.seconds_per_step is not None]
    gens = [r.seconds_per_generation for r in runs if r.seconds_per_generation is not None]
    starts = [r.rewards[0] for r in runs if r.rewards and math.isfinite(r.rewards[0])]
    notes = []
    if not stiff.linear:
        notes.append("the rate was not linear in the learning rate: " + stiff.message)
    if len(set(stiff.learning_rates)) < 2:
        notes.append("K comes from one learning rate: linearity was not checked")
    if scan.cost > budget:
        notes.append(f"cost {scan.cost} steps exceeded the budget {budget}: the confirmation "
                     "and stiffness runs are never cut short")
    return PilotResult(
        stiffness=stiff, edge=edge, edge_learning_rate=edge_lr, optimizer=optimizer,
        momentum=momentum, samples_per_step=scan.ctx["samples_per_step"],
        num_generations=args.num_generations, planned_steps=planned, horizon_steps=horizon,
        budget_steps=budget, cost_steps=scan.cost,
        cost_seconds=sum(r.seconds for r in runs),
        seconds_per_step=statistics.median(on_policy) if on_policy else None,
        seconds_per_generation=statistics.median(gens) if gens else None,
        linear=bool(stiff.linear), start_reward=statistics.fmean(starts) if starts else math.nan,
        runs=tuple(runs), histories=dict(scan.histories), message="; ".join(notes))


# ------------------------------------------------------------------------------------------
# Optuna objective
# ------------------------------------------------------------------------------------------
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
    ``"advisor:start_reward"`` the start reward of the shared instability rule.
    """
    for key, column in health.items():
        value = row.get(key)
        column.append(value)  # None where not logged; NaN/inf kept: they signal divergence
    trial.set_user_attr("advisor:health", health)
    if math.isfinite(detector.start):
        trial.set_user_attr("advisor:start_reward", detector.start)

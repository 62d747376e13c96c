"""Pilot results: `PilotRun`, `PilotResult` and their JSON + CSV files."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal


if TYPE_CHECKING:
    from advisor.refresh import RefreshTiming
    from advisor.stability import EdgeEstimate
    from advisor.stability import StabilityModel
    from advisor.stiffness import StiffnessEstimate

Purpose = Literal["scan", "stiffness", "batch", "refresh", "timing"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PilotRun:
    """One real GRPO run of the pilot.

    Attributes:
        name: File stem under ``output_dir/runs``.
        purpose: ``"scan"`` (edge), ``"stiffness"``, ``"batch"`` or ``"refresh"`` (second
            points in samples per step or refresh interval), ``"timing"`` (a short run with
            ``steps_per_generation > 1`` that measures the fixed cost of a generate call).
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
        seconds_per_generation: Median wall time of one generation + scoring call (the first
            call, which warms up, excluded when there are others).
        rewards: Mean reward per optimizer step, carried forward over steps without one.
        refresh_interval: K_ref of the run (optimizer steps per generation; 1 = on-policy).
        seconds_per_train_step: Median wall time of an optimizer step without its generation
            call (step time minus the time of the generate call made in that step).

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
    seconds_per_train_step: float | None = None

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
        budget_steps: Budget in optimizer steps (default 3 x planned_steps); the pilot plans
            its runs so that ``cost_steps <= budget_steps`` (resumed runs included).
        cost_steps: Optimizer steps actually run (resumed runs included).
        cost_seconds: Wall time of all runs.
        seconds_per_step: Median seconds per on-policy optimizer step (generation included).
        seconds_per_generation: Median seconds per on-policy generation + scoring call (one
            step's completions).
        seconds_per_train_step: Median seconds per optimizer step without generation
            (``t_train`` of `advisor.refresh`).
        generation_overhead: Fixed cost ``g_0`` of one generate call in seconds, solved from
            the on-policy calls and the calls of the ``"timing"`` run, which generates
            ``steps_per_generation`` steps' completions at once: ``g(s) = g_0 + g_1 s``
            (None when not measured).
        linear: Whether the rate was linear in the learning rate (stiffness check).
        adam_beta1: ``adam_beta1`` of the scan for AdamW (None for SGD or an older save).
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
    seconds_per_train_step: float | None = None
    generation_overhead: float | None = None
    adam_beta1: float | None = None

    @property
    def over_budget(self) -> bool:
        """Whether the pilot ran past its budget (only resumed runs of another budget can)."""
        return self.cost_steps > self.budget_steps

    def timing(self) -> RefreshTiming:
        """The wall-time model `advisor.refresh.RefreshTiming` that ``recommend-refresh`` uses.

        Raises:
            AdvisorError: The pilot recorded no timing.
        """
        from advisor.refresh import RefreshTiming

        return RefreshTiming.from_pilot(self)

    def model(self, **kwargs: Any) -> StabilityModel:
        """The calibrated `advisor.stability.StabilityModel` (theory + measured edge).

        Knobs a config leaves out default to the pilot's own settings (batch, group size,
        optimizer, momentum or ``adam_beta1``), not to TRL's: a sampled
        ``{"learning_rate": ...}`` is judged at the batch the edge was measured at, and
        `advisor.StableRegionSampler` breaks ties of its guided trial towards these measured
        conditions. ``defaults=`` entries override them.

        Args:
            **kwargs: Extra keyword arguments of ``StabilityModel`` (e.g. ``safety``).
        """
        from advisor.stability import StabilityModel

        defaults: dict[str, Any] = {
            "per_device_train_batch_size": int(self.samples_per_step),
            "gradient_accumulation_steps": 1,
            "num_generations": int(self.num_generations),
            "optim": "sgd" if self.optimizer == "sgd" else "adamw_torch",
        }
        if self.optimizer == "sgd":
            defaults["momentum"] = float(self.momentum)
        elif self.adam_beta1 is not None:
            defaults["adam_beta1"] = float(self.adam_beta1)
        defaults.update(kwargs.pop("defaults", None) or {})
        return StabilityModel(self.stiffness, edge=self.edge, defaults=defaults, **kwargs)

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
        from advisor.pilot._stiffness import _estimate

        stiff = _estimate(runs, data["optimizer"], data["momentum"], data["samples_per_step"],
                          max_lr=data["edge_learning_rate"][0])[0]
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


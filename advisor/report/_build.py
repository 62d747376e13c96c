"""`build_report`: ask the library for every number of the report and collect them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from advisor.report._document import FeasibilityReport
from advisor.report._feasibility import _feasibility
from advisor.report._measurements import _pilot_attr
from advisor.report._measurements import _pilot_points
from advisor.report._measurements import _pilot_summary
from advisor.report._measurements import _trial_points
from advisor.report._measurements import _trial_summary
from advisor.report._prediction import _panel
from advisor.report._prediction import _trajectories
from advisor.report._warnings import _warnings


if TYPE_CHECKING:
    import optuna

    from advisor.stability import StabilityModel
    from advisor.study_file import ParamSpec
    from advisor.study_file import StudyFile

_REFRESH = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_GROUP_SIZES = (2, 4, 8, 16, 32, 64)


def build_report(
    model: StabilityModel,
    *,
    study: StudyFile | None = None,
    pilot: Any = None,
    optuna_study: optuna.Study | None = None,
    search_space: Mapping[str, ParamSpec] | None = None,
    fixed: Mapping[str, Any] | None = None,
    momenta: Sequence[float] | None = None,
    start_reward: float | None = None,
    steps: int | None = None,
    n_samples: int = 4096,
    seed: int = 0,
    title: str | None = None,
) -> FeasibilityReport:
    """Build the pre-sweep feasibility report.

    Args:
        model: Calibrated (or theory-only) :class:`~advisor.stability.StabilityModel`.
        study: Study file; supplies the search space, fixed knobs, steps and title.
        pilot: Optional :class:`~advisor.pilot.PilotResult` (measured points, timing, cost).
        optuna_study: Optional Optuna study; its finished trials are drawn as points.
        search_space: Overrides the study's search space.
        fixed: Overrides the study's fixed knobs.
        momenta: Momenta of the map panels (default: from the space, or 0).
        start_reward: Reward at step 0 for the predicted curves (default: the pilot's).
        steps: Optimizer steps of a run (default: the study's budget, else 150).
        n_samples: Search-space samples for the feasible fraction.
        seed: Seed of those samples (the report is deterministic for a fixed seed).
        title: Report title.

    Returns:
        The :class:`FeasibilityReport`.

    Example:
        >>> from types import SimpleNamespace
        >>> from advisor.stability import StabilityModel
        >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25, stiffness_sampler=-0.75,
        ...                       std_error=0.001, plateau=0.854)
        >>> rep = build_report(StabilityModel(est), steps=100, start_reward=0.5)
        >>> rep.edge is None, round(rep.panels[0].exact[0], 3)  # theory: eta K < 2 on-policy
        (True, 4.0)
        >>> rep.to_markdown().splitlines()[0]
        '# Feasibility report'
    """
    space = dict(search_space if search_space is not None
                 else (study.search_space if study is not None else {}))
    fixed = dict(fixed if fixed is not None else (study.fixed if study is not None else {}))
    steps = int(steps or (study.budget.steps if study is not None else 150))
    momenta = tuple(momenta or (study.report_momenta if study and study.report_momenta else ())
                    or _default_momenta(space, fixed))
    base = _base_params(space, fixed)
    fraction, intervals = _feasibility(model, space, fixed, n_samples=n_samples, seed=seed)
    panels = tuple(_panel(model, mu, _refresh_values(space), base) for mu in momenta)
    start = start_reward if start_reward is not None else _pilot_attr(pilot, "start_reward",
                                                                      "base_success")
    trajectories = _trajectories(model, panels, base, steps, start)
    plateau = _stiffness_dict(model).get("plateau")
    rates = [float(x) for x in (start, plateau) if x is not None] or [0.5]
    rep = FeasibilityReport(
        title=title or (f"Feasibility report: {study.name}" if study else "Feasibility report"),
        stiffness=_stiffness_dict(model), edge=_edge_dict(model),
        feasible_fraction=fraction, n_samples=n_samples if space else 0,
        intervals=intervals, panels=panels, trajectories=trajectories,
        group_sizes=_group_rows(rates), warnings=(), pilot=_pilot_summary(pilot),
        pilot_points=_pilot_points(pilot), trials=_trial_summary(optuna_study),
        trial_points=_trial_points(optuna_study, fixed), steps=steps)

    exact = getattr(model, "problem", None) is not None
    return dataclasses.replace(rep, warnings=_warnings(rep, exact=exact))


def _default_momenta(space: Mapping[str, ParamSpec],
                     fixed: Mapping[str, Any]) -> tuple[float, ...]:
    spec = space.get("momentum")
    if spec is None:
        return (float(fixed.get("momentum", 0.0)),)
    if spec.type == "categorical":
        return tuple(sorted(float(c) for c in spec.choices))[:4]
    return tuple(sorted({float(spec.low), round((spec.low + spec.high) / 2, 6),  # type: ignore
                         float(spec.high)}))


def _refresh_values(space: Mapping[str, ParamSpec]) -> tuple[int, ...]:
    top = 16
    for name in ("steps_per_generation", "num_iterations"):
        spec = space.get(name)
        if spec is not None and spec.type != "categorical":
            top = max(top, int(spec.high))  # type: ignore[arg-type]
    return tuple(k for k in _REFRESH if k <= top)


def _base_params(space: Mapping[str, ParamSpec], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Knob values of the map's cross-section: fixed values, else the middle of each range."""
    base = dict(fixed)
    for name, spec in space.items():
        if name in ("learning_rate", "momentum", "steps_per_generation", "num_iterations"):
            continue
        grid = spec.grid(3)
        base[name] = grid[len(grid) // 2]
    return base

def _group_rows(rates: Sequence[float]) -> tuple[Mapping[str, Any], ...]:
    import dataclasses

    from advisor.group_size import group_size_table

    return tuple({"success_rate": p, **dataclasses.asdict(row)}
                 for p in rates for row in group_size_table(p, _GROUP_SIZES))


def _stiffness_dict(model: StabilityModel) -> dict[str, Any]:
    est = model.estimate
    keys = ("stiffness", "std_error", "stiffness_current", "std_error_current",
            "stiffness_sampler", "std_error_sampler", "plateau", "linear", "method", "n_curves")
    return {k: getattr(est, k, None) for k in keys}


def _edge_dict(model: StabilityModel) -> dict[str, Any] | None:
    edge = getattr(model, "edge", None)
    if edge is None:
        return None
    keys = ("rate", "low", "high", "samples_per_step", "refresh_interval", "horizon_steps",
            "optimizer", "batch_exponent", "refresh_exponent", "num_iterations", "n_runs")
    return {k: getattr(edge, k, None) for k in keys}

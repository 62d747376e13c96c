"""Pre-sweep feasibility report: a stability model (+ pilot, + finished trials) -> documents.

:func:`build_report` asks the library for every number (``StabilityModel``, ``dynamics``,
``group_size``) and collects them in a frozen :class:`FeasibilityReport`; this module only
samples, tabulates and draws. :meth:`FeasibilityReport.write` produces Markdown with PNG
figures, one self-contained HTML file (figures embedded as base64) and JSON.

Every warning says whether it rests on **measurement** (the pilot) or on **theory** (the
closed-form / exact linear model), because real GRPO runs collapse far below the theory's edge
(research notes, theory.md section 6).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

import numpy as np

from advisor.exceptions import AdvisorError


if TYPE_CHECKING:
    import optuna

    from advisor.stability import StabilityModel
    from advisor.study_file import ParamSpec
    from advisor.study_file import StudyFile

__all__ = ["FeasibilityReport", "KnobInterval", "MapPanel", "ReportWarning", "build_report"]

_SIG = 4  # significant digits kept in JSON/Markdown, so golden files are stable across BLAS builds
_REFRESH = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_GROUP_SIZES = (2, 4, 8, 16, 32, 64)
_LEVELS = 16  # grid levels of float knobs other than the learning rate in the feasibility sample
_TRAJ_FRACTIONS = (0.1, 0.3, 0.6)  # predicted curves at these fractions of the calibrated edge


def _r(x: Any, sig: int = _SIG) -> Any:
    """Round to ``sig`` significant digits (None/inf/nan kept, ints untouched)."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    x = float(x)
    if not math.isfinite(x) or x == 0.0:
        return x if math.isfinite(x) else None
    return float(f"{x:.{sig}g}")


def _g(x: Any) -> str:
    """Format a number for Markdown (3 significant digits, '-' for missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(x)
    return f"{float(x):.3g}"


@dataclass(frozen=True)
class KnobInterval:
    """Feasible values of one knob: the projection of the predicted-stable samples.

    Attributes:
        name: GRPOConfig field name (or ``momentum``).
        low: Lower end of the searched range (categorical: ``None``).
        high: Upper end of the searched range.
        feasible_low: Smallest value among predicted-stable samples (``None`` if none).
        feasible_high: Largest value among predicted-stable samples.
        feasible_fraction: Share of samples with this knob's value that are predicted stable,
            per categorical choice (``{choice: fraction}``) or overall for numeric knobs.
    """

    name: str
    low: Any
    high: Any
    feasible_low: Any
    feasible_high: Any
    feasible_fraction: Any


@dataclass(frozen=True)
class MapPanel:
    """One panel of the stability map: maximum learning rate vs refresh interval at one momentum.

    Attributes:
        momentum: Heavy-ball momentum mu of the panel.
        refresh_interval: K_ref values (optimizer steps per generation refresh).
        calibrated: Calibrated (measured) edge, learning rate; ``None`` without a pilot edge.
        band_low: Lower end of its uncertainty band (the edge bracket times the stiffness error).
        band_high: Upper end of the band.
        exact: Theory layer's exact boundary (Floquet test of the linearised update).
        closed_form: The paper's line ``eta K K_ref = 1 - mu``.
        critical_damping: Learning rate where the theory's damping ratio is 1.
    """

    momentum: float
    refresh_interval: tuple[int, ...]
    calibrated: tuple[float | None, ...]
    band_low: tuple[float | None, ...]
    band_high: tuple[float | None, ...]
    exact: tuple[float | None, ...]
    closed_form: tuple[float | None, ...]
    critical_damping: tuple[float | None, ...]


@dataclass(frozen=True)
class ReportWarning:
    """A plain-language caveat.

    Attributes:
        text: What to watch out for and what to do.
        basis: ``"measurement"`` (from the pilot / finished trials) or ``"theory"``.

    Example:
        >>> ReportWarning(text="The edge bracket is wide.", basis="measurement").basis
        'measurement'
    """

    text: str
    basis: Literal["measurement", "theory"]


@dataclass(frozen=True)
class FeasibilityReport:
    """Everything the feasibility report shows; render with :meth:`to_markdown`, :meth:`write`.

    Build it with :func:`build_report` (its example shows one).

    Attributes:
        title: Report title.
        stiffness: Measured stiffness K (per unit lr), its split and standard errors.
        edge: The calibrated edge (critical rate eta K / (1 - mu)), or ``None`` (theory only).
        feasible_fraction: Share of the search space predicted stable.
        n_samples: Search-space samples behind ``feasible_fraction``.
        intervals: Per-knob feasible intervals.
        panels: The stability map.
        trajectories: Predicted reward curves (config, steps, mean, low, high).
        group_sizes: Rows of the group-size table.
        warnings: Caveats, each tagged with its basis.
        pilot: Pilot summary (cost, timing) or ``None``.
        pilot_points: Measured pilot runs: learning_rate, momentum, refresh_interval, unstable.
        trials: Finished-trial summary or ``None``.
        trial_points: Finished trials: learning_rate, momentum, refresh_interval, state.
        steps: Planned optimizer steps of one run.
    """

    title: str
    stiffness: Mapping[str, Any]
    edge: Mapping[str, Any] | None
    feasible_fraction: float | None
    n_samples: int
    intervals: tuple[KnobInterval, ...]
    panels: tuple[MapPanel, ...]
    trajectories: tuple[Mapping[str, Any], ...]
    group_sizes: tuple[Mapping[str, Any], ...]
    warnings: tuple[ReportWarning, ...]
    pilot: Mapping[str, Any] | None = None
    pilot_points: tuple[Mapping[str, Any], ...] = ()
    trials: Mapping[str, Any] | None = None
    trial_points: tuple[Mapping[str, Any], ...] = ()
    steps: int = 150

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with numbers rounded to 4 significant digits."""
        def clean(v: Any) -> Any:
            if isinstance(v, Mapping):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if hasattr(v, "__dataclass_fields__"):
                return clean({k: getattr(v, k) for k in v.__dataclass_fields__})
            if isinstance(v, np.generic):
                v = v.item()
            return _r(v) if isinstance(v, float) else v

        return clean({k: getattr(self, k) for k in self.__dataclass_fields__})


    def to_markdown(self, *, figures: Mapping[str, str] | None = None) -> str:
        """The report as Markdown; ``figures`` maps figure names to image links (optional)."""
        return _render_markdown(_blocks(self, figures or {}))

    def to_html(self, *, figures: Mapping[str, str] | None = None) -> str:
        """The report as one self-contained HTML page (``figures``: name -> data URI or link)."""
        return _render_html(self.title, _blocks(self, figures or {}))

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``report.md``, ``report.html``, ``report.json`` and the PNG figures.

        Args:
            directory: Output folder (created if its parent exists).

        Returns:
            Paths by kind: ``markdown``, ``html``, ``json``, ``stability_map``, ``trajectories``.

        Raises:
            AdvisorError: The folder's parent does not exist.
        """
        out = Path(directory)
        if not out.parent.is_dir():
            raise AdvisorError(f"the report folder's parent {str(out.parent)!r} does not exist. "
                               "Create it, or pass --output with an existing parent folder.")
        out.mkdir(exist_ok=True)
        paths = {"stability_map": out / "stability_map.png",
                 "trajectories": out / "trajectories.png"}
        _plot_stability_map(self, paths["stability_map"])
        _plot_trajectories(self, paths["trajectories"])
        (out / "report.md").write_text(
            self.to_markdown(figures={k: p.name for k, p in paths.items()}), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n",
                                         encoding="utf-8")
        uris = {k: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
                for k, p in paths.items()}
        (out / "report.html").write_text(self.to_html(figures=uris), encoding="utf-8")
        return {"markdown": out / "report.md", "html": out / "report.html",
                "json": out / "report.json", **paths}


# ------------------------------------------------------------------------------------------
# document blocks -> Markdown / HTML
# ------------------------------------------------------------------------------------------
Block = tuple[Any, ...]  # ("h", level, text) | ("p", text) | ("ul", items) | ("table", head, rows)
#                          | ("img", key, alt)


def _blocks(rep: FeasibilityReport, figures: Mapping[str, str]) -> list[Block]:
    b: list[Block] = [("h", 1, rep.title)]
    b += _summary_blocks(rep)
    b.append(("h", 2, "Stability map"))
    b.append(("p", "Maximum stable learning rate against the refresh interval "
                   "K_ref = steps_per_generation x num_iterations / gradient_accumulation_steps, "
                   "one panel per heavy-ball momentum. Below a line is stable by that line's "
                   "criterion. The calibrated edge (measured by the pilot) is what the advisor "
                   "uses; the theory lines are shown for comparison."))
    if "stability_map" in figures:
        b.append(("img", figures["stability_map"], "Stability map"))
    head = ["momentum", "K_ref", "calibrated lr*", "band", "exact theory", "paper", "zeta = 1"]
    rows = [[_g(p.momentum), str(k), _g(c), "-" if lo is None else f"{_g(lo)} - {_g(hi)}",
             _g(e), _g(cf), _g(z)]
            for p in rep.panels
            for k, c, lo, hi, e, cf, z in zip(p.refresh_interval, p.calibrated, p.band_low,
                                              p.band_high, p.exact, p.closed_form,
                                              p.critical_damping, strict=True)
            if k in (1, 4, 16)]
    b.append(("table", head, rows))
    b += _trajectory_blocks(rep, figures)
    b.append(("h", 2, "Group size"))
    b.append(("p", "Chance that a group has identical rewards (zero advantage, no gradient), "
                   "plateau shift and reward variance against num_generations G, at the start "
                   "and plateau success rates (theory, binary reward)."))
    if rep.group_sizes:
        heads = {"success_rate": "p", "num_generations": "G",
                 "degenerate_probability": "P(degenerate group)", "plateau_shift": "plateau shift",
                 "relative_variance": "relative variance",
                 "completions_per_informative_group": "completions per useful group"}
        keys = list(rep.group_sizes[0])
        b.append(("table", [heads.get(k, k) for k in keys],
                  [[_g(row[k]) for k in keys] for row in rep.group_sizes]))
    b.append(("h", 2, "Warnings"))
    b.append(("ul", [f"**{w.basis}**: {w.text}" for w in rep.warnings] or ["none"]))
    return b


def _summary_blocks(rep: FeasibilityReport) -> list[Block]:
    s = rep.stiffness
    b: list[Block] = [("h", 2, "Summary")]
    items = [f"Stiffness K = {_g(s.get('stiffness'))} +- {_g(s.get('std_error'))} per unit "
             f"learning rate (measured, {s.get('method', '?')}, {s.get('n_curves', '?')} curves)"]
    if s.get("stiffness_current") is not None:
        items.append(f"Split: K_c = {_g(s['stiffness_current'])}, K_o = "
                     f"{_g(s.get('stiffness_sampler'))} (current / sampling policy)")
    if rep.edge is not None:
        e = rep.edge
        items.append(f"Calibrated edge: rate eta K/(1 - mu) = {_g(e['rate'])} (bracket "
                     f"{_g(e['low'])} - {_g(e['high'])}) at {_g(e['samples_per_step'])} samples "
                     f"per step, K_ref {_g(e['refresh_interval'])}, {e['horizon_steps']} steps, "
                     f"{e['optimizer']} (measured, {e.get('n_runs', 0)} runs)")
    else:
        items.append("No calibrated edge: stability calls rest on theory only")
    if rep.feasible_fraction is not None:
        items.append(f"Feasible fraction of the search space: **{rep.feasible_fraction:.1%}** "
                     f"({rep.n_samples} samples)")
    if rep.pilot:
        items += [f"Pilot {k.replace('_', ' ')}: {_g(v) if not isinstance(v, str) else v}"
                  for k, v in rep.pilot.items()]
    if rep.trials:
        items += [f"Trials {k.replace('_', ' ')}: {_g(v) if not isinstance(v, str) else v}"
                  for k, v in rep.trials.items()]
    b.append(("ul", items))
    if rep.intervals:
        b.append(("h", 2, "Feasible intervals"))
        b.append(("p", "Range of each knob searched, and the range of values that occur among "
                       "predicted-stable configurations (other knobs varying)."))
        rows = [[iv.name, f"{_g(iv.low)} - {_g(iv.high)}" if iv.low is not None else "choices",
                 f"{_g(iv.feasible_low)} - {_g(iv.feasible_high)}"
                 if iv.feasible_low is not None else "none",
                 ", ".join(f"{k}: {v:.0%}" for k, v in iv.feasible_fraction.items())
                 if isinstance(iv.feasible_fraction, Mapping) else f"{iv.feasible_fraction:.0%}"]
                for iv in rep.intervals]
        b.append(("table", ["knob", "searched", "feasible", "stable share"], rows))
    return b


def _trajectory_blocks(rep: FeasibilityReport, figures: Mapping[str, str]) -> list[Block]:
    b: list[Block] = [("h", 2, "Predicted reward trajectories")]
    b.append(("p", "Closed-form mean-reward curves from the measured stiffness (theory "
                   "fitted to the pilot), with the 90% band from the stiffness error. Valid "
                   "only for runs that stay stable."))
    if "trajectories" in figures:
        b.append(("img", figures["trajectories"], "Predicted reward trajectories"))
    rows = [[_g(t["learning_rate"]), _g(t["momentum"]), str(t["refresh_interval"]),
             _g(t["time_constant"]), _g(t["damping_ratio"]), t["regime"], _g(t["mean"][-1])]
            for t in rep.trajectories]
    b.append(("table", ["learning_rate", "momentum", "K_ref", "time constant (steps)",
                        "damping ratio", "regime", f"reward at step {rep.steps}"], rows))
    return b


def _render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for kind, *rest in blocks:
        if kind == "h":
            out.append("#" * rest[0] + " " + rest[1])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0]})")
        elif kind == "table":
            head, rows = rest
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _render_html(title: str, blocks: Sequence[Block]) -> str:
    body: list[str] = []
    for kind, *rest in blocks:
        if kind == "h":
            body.append(f"<h{rest[0]}>{_inline(rest[1])}</h{rest[0]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(rest[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(rest[0])}" alt="{html.escape(rest[1])}">')
        elif kind == "table":
            head, rows = rest
            cells = "".join(f"<th>{_inline(h)}</th>" for h in head)
            trs = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                          for r in rows)
            body.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{trs}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
             "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "th{background:#f3f3f3}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------------------------------
# building the report (every number comes from the library)
# ------------------------------------------------------------------------------------------
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
    import dataclasses

    return dataclasses.replace(rep, warnings=_warnings(model, rep, base))


def _pilot_attr(pilot: Any, *names: str) -> Any:
    for name in names:
        value = getattr(pilot, name, None)
        if value is not None:
            return value
    return None


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


def _sample_space(space: Mapping[str, ParamSpec], n: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded samples of the space: learning_rate continuous, other knobs on a level grid.

    Float knobs other than the learning rate take the midpoints of 16 equal strata (log
    strata if ``log``) and integer knobs their integers, so the model sees few distinct
    (momentum, K_ref) pairs and evaluates each exactly.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            levels = np.asarray(spec.choices, dtype=object)
        elif spec.type == "int":
            levels = np.arange(int(spec.low), int(spec.high) + 1)  # type: ignore[arg-type]
        elif name == "learning_rate":
            lo, hi = float(spec.low), float(spec.high)  # type: ignore[arg-type]
            u = rng.random(n)
            out[name] = (np.exp(np.log(lo) + u * np.log(hi / lo)) if spec.log
                         else lo + u * (hi - lo))
            continue
        else:
            lo, hi = float(spec.low), float(spec.high)  # type: ignore[arg-type]
            mid = (np.arange(_LEVELS) + 0.5) / _LEVELS
            levels = (np.exp(np.log(lo) + mid * np.log(hi / lo)) if spec.log
                      else lo + mid * (hi - lo))
        if spec.type == "int" and spec.log:  # log-uniform over the integers
            w = np.log(levels + 0.5) - np.log(levels - 0.5)
            out[name] = rng.choice(levels, size=n, p=w / w.sum())
        else:
            out[name] = levels[rng.integers(len(levels), size=n)]
    return out


def _feasibility(
    model: StabilityModel, space: Mapping[str, ParamSpec], fixed: Mapping[str, Any], *,
    n_samples: int, seed: int,
) -> tuple[float | None, tuple[KnobInterval, ...]]:
    if not space:
        return None, ()
    samples = _sample_space(space, n_samples, seed)
    stable = np.zeros(n_samples, bool)
    cats = [k for k, s in space.items() if s.type == "categorical"]
    # categorical knobs (strings such as `optim`) are assessed one combination at a time
    combos = itertools.product(*(space[k].choices for k in cats)) if cats else [()]
    for combo in combos:
        sel = np.ones(n_samples, bool)
        for k, v in zip(cats, combo, strict=True):
            sel &= samples[k] == v
        if not sel.any():
            continue
        params = {**fixed, **dict(zip(cats, combo, strict=True)),
                  **{k: v[sel] for k, v in samples.items() if k not in cats}}
        stable[sel] = np.asarray(model.assess_many(params)["stable"], bool)
    intervals = []
    for name, spec in space.items():
        vals = samples[name]
        if spec.type == "categorical":
            share = {str(c): float(stable[vals == c].mean()) if (vals == c).any() else 0.0
                     for c in spec.choices}
            ok = [c for c in spec.choices if stable[vals == c].any()]
            intervals.append(KnobInterval(name=name, low=None, high=None,
                                          feasible_low=None if not ok else str(ok[0]),
                                          feasible_high=None if not ok else str(ok[-1]),
                                          feasible_fraction=share))
            continue
        good = vals[stable].astype(float)
        intervals.append(KnobInterval(
            name=name, low=spec.low, high=spec.high,
            feasible_low=float(good.min()) if good.size else None,
            feasible_high=float(good.max()) if good.size else None,
            feasible_fraction=float(stable.mean())))
    return float(stable.mean()), tuple(intervals)


def _panel(model: StabilityModel, mu: float, refresh: Sequence[int],
           base: Mapping[str, Any]) -> MapPanel:
    k = np.asarray(refresh, float)
    kw = dict(momentum=mu, refresh_interval=k, refresh_scheme="piecewise")

    def line(method: str) -> tuple[float | None, ...]:
        try:
            v = np.broadcast_to(np.asarray(model.max_learning_rate(**kw, method=method), float),
                                k.shape)
        except (ValueError, AdvisorError):
            return (None,) * k.size
        return tuple(float(x) if np.isfinite(x) else None for x in v)

    has_edge = getattr(model, "edge", None) is not None
    calibrated = line("calibrated") if has_edge else (None,) * k.size
    lo, hi = _band(model, calibrated)
    return MapPanel(momentum=float(mu), refresh_interval=tuple(int(x) for x in refresh),
                    calibrated=calibrated, band_low=lo, band_high=hi, exact=line("exact"),
                    closed_form=line("closed_form"),
                    critical_damping=_critical_damping(model, mu, k, base))


def _momentum(model: StabilityModel, mu: Any) -> dict[str, Any]:
    """``{"momentum": mu}`` for a heavy-ball model; nothing for AdamW (the key selects SGD)."""
    return {"momentum": mu} if model.optimizer == "sgd" else {}


def _band(model: StabilityModel, calibrated: Sequence[float | None]
          ) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """Edge band: the scan bracket (low/high) combined with the stiffness's relative error."""
    edge = getattr(model, "edge", None)
    if edge is None:
        n = len(calibrated)
        return (None,) * n, (None,) * n
    est = model.estimate
    rel = float(est.std_error) / float(est.stiffness) if est.stiffness else 0.0
    f_lo = edge.low / edge.rate / (1.0 + rel)
    f_hi = edge.high / edge.rate * (1.0 + rel)
    return (tuple(None if c is None else c * f_lo for c in calibrated),
            tuple(None if c is None else c * f_hi for c in calibrated))


def _critical_damping(model: StabilityModel, mu: float, k: np.ndarray,
                      base: Mapping[str, Any]) -> tuple[float | None, ...]:
    """Learning rate where the theory's damping ratio first drops below 1 (overshoot onset)."""
    lrs = np.geomspace(1e-4, 1e1, 241) / float(model.stiffness)
    n = lrs.size
    params = {**base, "learning_rate": np.tile(lrs, k.size),
              "steps_per_generation": np.repeat(k.astype(np.int64), n),
              "num_iterations": 1, "gradient_accumulation_steps": 1,
              **_momentum(model, np.full(n * k.size, mu))}
    zeta = np.asarray(model.assess_many(params, details=True)["damping_ratio"], float)
    out: list[float | None] = []
    for row in zeta.reshape(k.size, n):
        below = np.flatnonzero(row < 1.0)
        out.append(float(lrs[below[0]]) if below.size else None)
    return tuple(out)


def _trajectories(model: StabilityModel, panels: Sequence[MapPanel], base: Mapping[str, Any],
                  steps: int, start: float | None) -> tuple[Mapping[str, Any], ...]:
    """Predicted curves on-policy at the first panel's momentum, for three learning rates.

    The rates are 0.2, 0.45 and 0.8 of the edge (calibrated, else exact theory), each lowered
    where needed so that its predicted time constant is at least a third, an eighth and a
    twentieth of the run (otherwise the curves would all jump to the plateau at once).
    """
    from advisor.dynamics import trajectory

    est = model.estimate
    panel = panels[0] if panels else None
    edge_lr = None if panel is None else (panel.calibrated[0] or panel.exact[0])
    if getattr(est, "plateau", None) is None or start is None or edge_lr is None:
        return ()
    k, mu = float(model.stiffness), panel.momentum
    # per-step rate x = eta K / (1 - mu), so eta = x (1 - mu) / K (theory.md section 1)
    lrs = sorted({float(_r(min(f * edge_lr, (1.0 - mu) / (steps / c * k)), 2))
                  for f, c in ((0.2, 3.0), (0.45, 8.0), (0.8, 20.0))})
    t = np.arange(steps + 1)
    stride = max(1, steps // 100)
    # lognormal band on K: a relative error of 100% must not make the rate negative
    sig = math.log1p(float(est.std_error) / k) if est.std_error else 0.0
    out = []
    for lr in lrs:
        v = model.assess({**base, "learning_rate": lr, "steps_per_generation": 1,
                          **_momentum(model, mu)})
        mean, a, b = (trajectory(t, plateau=float(est.plateau), start=float(start),
                                 rate=lr * k * s / (1.0 - mu), momentum=mu, model="heavy_ball")
                      for s in (1.0, math.exp(-1.645 * sig), math.exp(1.645 * sig)))
        out.append({"learning_rate": lr, "momentum": mu, "refresh_interval": 1,
                    "time_constant": float(v.time_constant),
                    "damping_ratio": float(v.damping_ratio),
                    "regime": str(getattr(v.regime, "value", v.regime)),
                    "steps": t[::stride].tolist(), "mean": mean[::stride].tolist(),
                    "low": np.minimum(a, b)[::stride].tolist(),
                    "high": np.maximum(a, b)[::stride].tolist()})
    return tuple(out)


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
    if complete:
        best = max(complete, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        out["best_value"] = best.value
        out["best_params"] = ", ".join(f"{k}={_g(v) if not isinstance(v, str) else v}"
                                       for k, v in best.params.items())
    return out


def _collapsed(trial: Any) -> bool:
    import optuna

    attrs = trial.user_attrs
    for key in ("advisor:collapsed", "advisor:unstable"):
        if key in attrs:
            return bool(attrs[key])
    return trial.state == optuna.trial.TrialState.FAIL


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


def _warnings(model: StabilityModel, rep: FeasibilityReport,
              base: Mapping[str, Any]) -> tuple[ReportWarning, ...]:
    w: list[ReportWarning] = []
    if rep.edge is None:
        w.append(ReportWarning(
            text="No measured stability edge: the feasible region is the theory layer's. Real "
                 "GRPO runs collapsed 10-50x below the theory's edge in our measurements; run "
                 "`grpo-advisor pilot` before trusting it for TRL training.", basis="theory"))
    else:
        e = rep.edge
        w.append(ReportWarning(
            text=f"The edge was measured over {e['horizon_steps']} steps. Collapses are rare "
                 "events, so longer runs may collapse below it; keep a margin (the sampler's "
                 "default) for longer training.", basis="measurement"))
        if e["high"] / e["low"] > 2.0:
            w.append(ReportWarning(
                text=f"The edge bracket is wide ({_g(e['low'])} - {_g(e['high'])}): add seeds or "
                     "learning rates to the pilot scan to narrow it.", basis="measurement"))
        if e.get("batch_exponent") is None:
            w.append(ReportWarning(
                text="How the edge moves with samples per step was not measured; a conservative "
                     "default exponent is used away from the pilot's batch size.",
                basis="theory"))
    s = rep.stiffness
    if s.get("linear") is False:
        w.append(ReportWarning(
            text="The pilot's relaxation rate was not proportional to the learning rate: "
                 "predicted time constants are less reliable.", basis="measurement"))
    if s.get("stiffness") and s.get("std_error") and s["std_error"] > 0.25 * s["stiffness"]:
        w.append(ReportWarning(
            text=f"The stiffness is uncertain (K = {_g(s['stiffness'])} +- "
                 f"{_g(s['std_error'])}); lengthen the pilot's small-lr runs.",
            basis="measurement"))
    if rep.feasible_fraction is not None and rep.feasible_fraction < 0.1:
        w.append(ReportWarning(
            text=f"Only {rep.feasible_fraction:.1%} of the search space is predicted stable: "
                 "narrow the learning-rate range to the feasible interval above.",
            basis="measurement" if rep.edge is not None else "theory"))
    for t in rep.trajectories:
        if t["time_constant"] > rep.steps:
            w.append(ReportWarning(
                text=f"At learning_rate={_g(t['learning_rate'])} the predicted time constant "
                     f"({_g(t['time_constant'])} steps) exceeds the {rep.steps}-step run: it will "
                     "not reach its plateau.", basis="theory"))
            break
    if rep.trials and rep.trials.get("collapse_rate", 0) > 0.05:
        w.append(ReportWarning(
            text=f"{rep.trials['collapse_rate']:.0%} of finished trials collapsed; the sampler "
                 "tightens its edge from them as the study runs.", basis="measurement"))
    return tuple(w)


# ------------------------------------------------------------------------------------------
# figures (matplotlib, Agg)
# ------------------------------------------------------------------------------------------
def _plot_stability_map(rep: FeasibilityReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(rep.panels))
    # at least 9.5 in wide, so a one-panel map still fits a four-column legend
    fig, axes = plt.subplots(1, n, figsize=(max(4.6 * n, 9.5), 4.6), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], rep.panels, strict=True):
        k = np.asarray(panel.refresh_interval, float)

        def arr(vals: Sequence[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in vals], float)

        if any(v is not None for v in panel.calibrated):
            ax.fill_between(k, arr(panel.band_low), arr(panel.band_high), color="tab:blue",
                            alpha=0.18, label="calibrated edge band")
            ax.plot(k, arr(panel.calibrated), "-", color="tab:blue", lw=2.2,
                    label="calibrated edge (measured)")
        ax.plot(k, arr(panel.exact), "--", color="tab:orange", lw=1.6,
                label="exact theory boundary")
        ax.plot(k, arr(panel.closed_form), ":", color="tab:red", lw=1.8,
                label="paper: eta K K_ref = 1 - mu")
        ax.plot(k, arr(panel.critical_damping), "-.", color="tab:green", lw=1.4, marker=".",
                label="theory damping ratio = 1")
        _scatter(ax, rep.pilot_points, panel.momentum, "unstable",
                 {False: ("o", "black", "pilot: stable"), True: ("x", "black", "pilot: unstable")})
        _scatter(ax, rep.trial_points, panel.momentum, "state",
                 {"complete": ("o", "tab:purple", "trial: complete"),
                  "pruned": ("s", "tab:gray", "trial: pruned"),
                  "collapsed": ("X", "tab:red", "trial: collapsed"),
                  "fail": ("X", "tab:red", "trial: collapsed")})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([x for x in k if x in (1, 2, 4, 8, 16, 32)])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("refresh interval K_ref (optimizer steps)")
        ax.set_title(f"momentum = {panel.momentum:g}")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("learning_rate")
    handles, labels = {}, []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
               ncol=min(4, len(labels)), fontsize=9, frameon=False)
    fig.suptitle("Maximum stable learning rate vs refresh interval")
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scatter(ax: Any, points: Sequence[Mapping[str, Any]], momentum: float, key: str,
             styles: Mapping[Any, tuple[str, str, str]]) -> None:
    for value, (marker, color, label) in styles.items():
        sel = [p for p in points if p[key] == value and abs(p["momentum"] - momentum) < 1e-9]
        if sel:
            ax.scatter([p["refresh_interval"] for p in sel], [p["learning_rate"] for p in sel],
                       marker=marker, color=color, s=36, label=label, zorder=3)


def _plot_trajectories(rep: FeasibilityReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for t, color in zip(rep.trajectories, colors, strict=False):
        ax.fill_between(t["steps"], t["low"], t["high"], color=color, alpha=0.2)
        ax.plot(t["steps"], t["mean"], color=color,
                label=f"learning_rate={_g(t['learning_rate'])}, momentum={_g(t['momentum'])}")
    if not rep.trajectories:
        ax.text(0.5, 0.5, "no start reward / plateau: run the pilot", ha="center",
                transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward (predicted)")
    ax.set_title("Predicted reward trajectories (90% band from the stiffness error)")
    ax.grid(True, alpha=0.3)
    if rep.trajectories:
        ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

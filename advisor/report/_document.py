"""The report's result types, and `FeasibilityReport`'s Markdown, HTML and JSON output."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np

from advisor.exceptions import AdvisorError
from advisor.report._figures import _plot_stability_map
from advisor.report._figures import _plot_trajectories
from advisor.report._format import _r
from advisor.report._render import _blocks
from advisor.report._render import _render_html
from advisor.report._render import _render_markdown


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
        band_low: Lower end of its uncertainty band (the pilot's edge bracket, widened away
            from the pilot's refresh interval by the 90% range of the calibration law).
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
            AdvisorError: The folder's parent does not exist, the path is a file, or the
                folder is not writable.
        """
        out = Path(directory)
        if not out.parent.is_dir():
            raise AdvisorError(f"the report folder's parent {str(out.parent)!r} does not exist. "
                               "Create it, or pass --output with an existing parent folder.")
        if out.exists() and not out.is_dir():
            raise AdvisorError(f"the report folder {str(out)!r} is a file. Pass --output with "
                               "a folder (it is created if missing).")
        try:
            return self._write(out)
        except PermissionError as exc:
            raise AdvisorError(f"cannot write the report to {str(out)!r}: permission denied "
                               f"({exc.filename}). Pass --output with a writable folder."
                               ) from None

    def _write(self, out: Path) -> dict[str, Path]:
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

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

from advisor.report._build import build_report
from advisor.report._document import FeasibilityReport
from advisor.report._document import KnobInterval
from advisor.report._document import MapPanel
from advisor.report._document import ReportWarning


__all__ = ["FeasibilityReport", "KnobInterval", "MapPanel", "ReportWarning", "build_report"]

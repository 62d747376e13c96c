"""The report's plain-language caveats, each tagged measurement or theory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from advisor.report._document import ReportWarning
from advisor.report._format import _g


if TYPE_CHECKING:
    from advisor.report._document import FeasibilityReport


def _edge_warnings(edge: Mapping[str, Any] | None, *, exact: bool = False
                   ) -> list[ReportWarning]:
    """Caveats about the calibrated edge (or about its absence); ``exact``: the model knows its
    bandit problem, so the theory layer is exact and needs no measured edge."""
    w: list[ReportWarning] = []
    if edge is None and exact:
        w.append(ReportWarning(
            text="No measured stability edge: the feasible region is the theory layer's, which "
                 "is exact for this softmax-bandit objective. It does not carry over to an LM: "
                 "real GRPO runs collapsed 10-50x below the theory's edge in our measurements, "
                 "so pilot a TRL study before trusting a theory-only region there.",
            basis="theory"))
    elif edge is None:
        w.append(ReportWarning(
            text="No measured stability edge: the feasible region is the theory layer's. Real "
                 "GRPO runs collapsed 10-50x below the theory's edge in our measurements; run "
                 "`grpo-advisor pilot` before trusting it for TRL training.", basis="theory"))
    else:
        e = edge
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
    return w


def _warnings(rep: FeasibilityReport, *, exact: bool = False) -> tuple[ReportWarning, ...]:
    """Every caveat of the report, each tagged measurement or theory (``exact``: the theory
    layer is exact, a bandit objective)."""
    w = _edge_warnings(rep.edge, exact=exact)
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

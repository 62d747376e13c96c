"""The report as document blocks, and the blocks as Markdown or as one HTML page."""

from __future__ import annotations

import html
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from advisor.report._format import _g


if TYPE_CHECKING:
    from advisor.report._document import FeasibilityReport

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
                   "uses; the theory lines are shown for comparison. Pilot runs and finished "
                   "trials are drawn in the panel of the nearest momentum."))
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
        items += [f"Trials {k.replace('_', ' ')}: "
                  + (v if isinstance(v, str) else f"{v:.0%}" if k == "collapse_rate" else _g(v))
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

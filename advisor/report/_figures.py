"""The report's PNG figures (matplotlib, Agg): the stability map and the predicted curves."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from advisor.report._format import _g


if TYPE_CHECKING:
    from advisor.report._document import FeasibilityReport


def _plot_stability_map(rep: FeasibilityReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(rep.panels))
    momenta = [p.momentum for p in rep.panels]
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
        mine = _nearest(momenta, panel.momentum)
        _scatter(ax, rep.pilot_points, mine, "unstable",
                 {False: ("o", "black", "pilot: stable"), True: ("x", "black", "pilot: unstable")})
        _scatter(ax, rep.trial_points, mine, "state",
                 {"complete": ("o", "tab:purple", "trial: complete"),
                  "pruned": ("s", "tab:gray", "trial: pruned"),
                  "collapsed": ("X", "tab:red", "trial: collapsed"),
                  "fail": ("x", "tab:gray", "trial: failed / interrupted")})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([x for x in k if x in (1, 2, 4, 8, 16, 32)])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("refresh interval K_ref (optimizer steps)")
        ax.set_title(f"momentum = {panel.momentum:g}")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("learning_rate")
    n_labels = _shared_legend(fig, axes[0])
    fig.suptitle("Maximum stable learning rate vs refresh interval")
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((n_labels - 1) // 4), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shared_legend(fig: Any, axes: Sequence[Any]) -> int:
    """One legend below all panels (each label once); returns the number of labels."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
               ncol=min(4, len(labels)), fontsize=9, frameon=False)
    return len(labels)


def _nearest(momenta: Sequence[float], momentum: float) -> Callable[[float], bool]:
    """Whether a point's momentum is nearer to ``momentum`` than to any other panel's: every
    point lands in exactly one panel (ties go to the first)."""
    def test(mu: float) -> bool:
        best = min(momenta, key=lambda m: abs(m - mu)) if momenta else momentum
        return best == momentum

    return test


def _scatter(ax: Any, points: Sequence[Mapping[str, Any]], in_panel: Callable[[float], bool],
             key: str, styles: Mapping[Any, tuple[str, str, str]]) -> None:
    for value, (marker, color, label) in styles.items():
        sel = [p for p in points if p[key] == value and in_panel(p["momentum"])]
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

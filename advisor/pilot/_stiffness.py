"""Stiffness from the pilot's own stable on-policy curves (no separate stiffness runs).

The confirmed-stable full-horizon runs and the stable scan runs at or below the confirmed
stable end already are on-policy rise curves at the user's batch and group size, at two or more
learning rates (the ladder's stable level, the bisection points, the confirmation level). K
comes from them with `advisor.stiffness.estimate_stiffness` (the plateau pinned from the most
saturated curve), so the budget buys long curves instead of short extra runs. Curves above the
confirmed stable end are left out: they survived only short runs, and near the edge the rate
saturates (real-trl-findings.md section 2). A ``"stiffness"`` run (lo / 2, on the budget
left over) adds a less saturated rate when the budget holds one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advisor.pilot._result import PilotRun


_MIN_CURVE = 10  # points: shorter curves carry no usable rate


def _curve_runs(runs: Sequence[PilotRun], samples_per_step: int,
                max_lr: float | None = None) -> list[PilotRun]:
    """The stable on-policy runs at the scan's batch that carry a rise curve."""
    keep = []
    for r in runs:
        if r.refresh_interval != 1 or r.samples_per_step != samples_per_step \
                or len(r.rewards) < _MIN_CURVE or r.purpose not in ("scan", "stiffness"):
            continue
        # a stiffness run that merely rose too little ("no_net_gain") still carries its rate
        if r.unstable and not (r.purpose == "stiffness" and r.reason == "no_net_gain"):
            continue
        if max_lr is not None and r.learning_rate > max_lr * 1.0001:
            continue
        keep.append(r)
    return keep


def _estimate(runs: Sequence[PilotRun], optimizer: str, momentum: float,
              samples_per_step: int, max_lr: float | None = None
              ) -> tuple[Any, list[PilotRun]]:
    """K (heavy-ball units) from the stable on-policy curves at or below ``max_lr``.

    ``max_lr`` is the confirmed stable end of the edge bracket (None: no limit). When no
    curve lies at or below it, every stable on-policy curve is used.
    """
    from advisor.stiffness import PilotCurve
    from advisor.stiffness import estimate_stiffness

    used = _curve_runs(runs, samples_per_step, max_lr) or _curve_runs(runs, samples_per_step)
    curves = [PilotCurve(rewards=list(r.rewards), learning_rate=r.learning_rate,
                         momentum=momentum, optimizer=optimizer, refresh_interval=1,
                         samples_per_step=r.samples_per_step, seed=r.seed) for r in used]
    return estimate_stiffness(curves), used

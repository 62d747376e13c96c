"""`Verdict`: the stability call for one configuration."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Literal

from advisor._validation import finite_json
from advisor.dynamics import Regime


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
    """The stability call for one configuration.

    Attributes:
        stable: Predicted stable (``margin > 0``).
        margin: ``log(max_learning_rate / learning_rate)``; > 0 predicted stable.
        probability: Probability of being stable, ``Phi(m_t / s_t) * Phi(m_c / s_c)`` over the
            theory (t) and calibration (c) layers, lognormal on each edge.
        layer: The layer whose bound is tighter: ``"theory"`` or ``"calibration"``.
        max_learning_rate: The tighter of the two layers' largest stable learning rate.
        regime: Predicted regime of the mean reward at this learning rate (linear theory).
        damping_ratio: zeta of the dominant mode (>= 1 overdamped; ``inf`` first order).
        time_constant: e-folding time of the dominant mode, in optimizer steps.
        reason: One sentence naming the deciding bound and its conditions.

    Example:
        >>> v = Verdict(stable=True, margin=0.5, probability=0.9, layer="theory",
        ...             max_learning_rate=0.1, regime=Regime.MONOTONE, damping_ratio=2.0,
        ...             time_constant=40.0, reason="exact linear test")
        >>> v.to_dict()["regime"]
        'monotone'
    """

    stable: bool
    margin: float
    probability: float
    layer: Literal["theory", "calibration"]
    max_learning_rate: float
    regime: Regime
    damping_ratio: float
    time_constant: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dictionary: the regime as its string value, non-finite numbers (the
        infinite damping ratio of a first-order mode, the time constant of an unstable one) as
        None, as `advisor._validation.finite_json` does for every JSON output."""
        out = dataclasses.asdict(self)
        out["regime"] = self.regime.value
        return dict(finite_json(out))

"""Closed-form trajectories of the mean reward and fits of reward curves (work in progress)."""

from __future__ import annotations

from enum import Enum


__all__ = ["Regime"]


class Regime(str, Enum):
    """Qualitative regime of the mean-reward trajectory.

    Example:
        >>> Regime("overshoot") is Regime.OVERSHOOT
        True
    """

    MONOTONE = "monotone"
    OVERSHOOT = "overshoot"
    OSCILLATORY = "oscillatory"
    DIVERGENT = "divergent"

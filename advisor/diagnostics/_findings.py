"""Result types of `advisor.diagnostics.diagnose`: one `Finding` per mode, a `DiagnosisReport`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from advisor.instability import InstabilityLabel


MODES = ("reward_hacking", "advantage_degeneracy", "policy_concentration",
         "dynamical_instability", "noise_collapse", "too_slow")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosed failure mode.

    Attributes:
        mode: One of `MODES`.
        steps: First and last optimizer step of the evidence.
        evidence: The metric values compared and the thresholds they crossed.
        confidence: Heuristic score in [0.5, 1).
        recommendation: One plain recommendation.
        config_changes: Concrete ``GRPOConfig`` values that follow from it (may be empty).

    Example:
        >>> Finding(mode="too_slow", steps=(1, 50), evidence={}, confidence=0.7,
        ...         recommendation="raise learning_rate").mode
        'too_slow'
    """

    mode: str
    steps: tuple[int, int]
    evidence: Mapping[str, float]
    confidence: float
    recommendation: str
    config_changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DiagnosisReport:
    """Findings of `diagnose` on one run.

    Attributes:
        findings: Diagnosed modes, most confident first.
        label: The shared instability label of the run.
        not_checked: Mode -> why it could not be checked (missing metric, too short).
        n_steps: Last optimizer step logged.
        start_reward: Start reward used (the given one, or the mean of the first 3 rewards).
        final_reward: Mean reward of the final window.
        n_dropped_nonfinite: Non-finite rewards dropped (``nan_policy="omit"``).

    Example:
        >>> from advisor.diagnostics import diagnose
        >>> rep = diagnose({"reward": [0.3 + 0.5 * (1 - 0.9 ** t) for t in range(60)]})
        >>> rep.healthy, sorted(rep.not_checked)[:2]
        (True, ['advantage_degeneracy', 'noise_collapse'])
    """

    findings: tuple[Finding, ...]
    label: InstabilityLabel
    not_checked: Mapping[str, str]
    n_steps: int
    start_reward: float
    final_reward: float
    n_dropped_nonfinite: int = 0

    @property
    def healthy(self) -> bool:
        """True when no mode was diagnosed."""
        return not self.findings

    def modes(self) -> list[str]:
        """The diagnosed modes, most confident first."""
        return [f.mode for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        return _jsonable(dataclasses.asdict(self))

    def to_table(self) -> str:
        """A short fixed-width table of the findings and what was not checked."""
        lines = [f"{'mode':<22} {'steps':<11} {'conf':>4}  recommendation"]
        for f in self.findings:
            change = ", ".join(f"{k}={v!r}" for k, v in f.config_changes.items())
            lines.append(f"{f.mode:<22} {f'{f.steps[0]}-{f.steps[1]}':<11} "
                         f"{f.confidence:>4.2f}  {f.recommendation}"
                         + (f" [set {change}]" if change else ""))
        if not self.findings:
            lines.append(f"{'(none)':<22} {'':<11} {'':>4}  no failure mode found")
        lines += [f"not checked: {m}: {why}" for m, why in self.not_checked.items()]
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj

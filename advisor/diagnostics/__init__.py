"""Failure-mode diagnostics from TRL GRPO logs, offline (`diagnose`) and live (`AdvisorCallback`).

Modes (theory.md section 5, real-trl-findings.md sections 4 and 6):

* ``reward_hacking``: train reward gains headroom while a held-out metric does not; compares
  the headroom-normalised gains (R(end) - R(0)) / (R_max - R(0)). Needs ``eval_metric``.
* ``advantage_degeneracy``: ``frac_reward_zero_std`` >= 0.5 with room left to learn, against the
  binary-reward prediction p^G + (1 - p)^G (G = ``num_generations``).
* ``policy_concentration``: token entropy below 0.3 of its start while the reward stopped
  rising well below the maximum.
* ``dynamical_instability``: divergence or collapse by the shared instability rule
  (`advisor.instability`), or a visible oscillation of the fitted reward trajectory; checked
  against a `StabilityModel` when one is given.
* ``noise_collapse``: a grad-norm spike (>= 10x its running median), then an entropy jump within
  6 steps, then a reward drop: the rare-event collapse that sets the edge for SGD.
* ``too_slow``: the fitted time constant exceeds the training horizon.

Rewards (and the other generation-time metrics) are carried forward over rows that do not log
them. Confidences are heuristic scores in [0.5, 1) that grow with how far a threshold is crossed.
"""

from __future__ import annotations

from typing import Any

from advisor.diagnostics._diagnose import diagnose
from advisor.diagnostics._diagnose import diagnose_main
from advisor.diagnostics._findings import MODES
from advisor.diagnostics._findings import DiagnosisReport
from advisor.diagnostics._findings import Finding
from advisor.diagnostics._history import load_history


__all__ = ["MODES", "DiagnosisReport", "Finding", "diagnose", "diagnose_main", "load_history",
           "AdvisorCallback"]  # noqa: F822 (AdvisorCallback is built lazily by __getattr__)


def __getattr__(name: str) -> Any:
    if name == "AdvisorCallback":  # built on first use: transformers is heavy to import
        from advisor.diagnostics._callback import callback_class

        return callback_class()
    raise AttributeError(f"module 'advisor.diagnostics' has no attribute {name!r}")

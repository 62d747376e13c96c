"""grpo-advisor: predict which GRPO hyperparameters train stably, and sweep only those.

The package re-exports its public API lazily, so ``import advisor`` stays light: numpy, scipy
and optuna load only when a name that needs them is used, and torch/trl only when the pilot runs.

Example:
    >>> import advisor
    >>> "torch" in advisor.__all__
    False
"""

from __future__ import annotations

import importlib
from typing import Any


__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "AdvisorError": "exceptions",
    "AdvisorWarning": "exceptions",
    "FitError": "exceptions",
    "InsufficientDataError": "exceptions",
    "Knobs": "knobs",
    "BanditProblem": "bandit",
    "BanditRun": "bandit",
    "to_grpo_kwargs": "knobs",
    "knobs_from_params": "knobs",
    "InstabilityLabel": "instability",
    "label_run": "instability",
    "Regime": "dynamics",
    "TrajectoryFit": "dynamics",
    "fit_trajectory": "dynamics",
    "PilotCurve": "stiffness",
    "StiffnessEstimate": "stiffness",
    "estimate_stiffness": "stiffness",
    "EdgeEstimate": "stability",
    "StabilityModel": "stability",
    "Verdict": "stability",
    "StableRegionSampler": "sampler",
    "TrajectoryPruner": "pruner",
    "PilotResult": "pilot",
    "run_pilot": "pilot",
    "make_objective": "pilot",
    "builtin_task": "tasks",
    "diagnose": "diagnostics",
    "AdvisorCallback": "diagnostics",
    "FeasibilityReport": "report",
    "build_report": "report",
    "recommend_refresh": "refresh",
    "load_study_file": "study_file",
}
_SUBMODULES = (
    "bandit", "dynamics", "stiffness", "stability", "knobs", "group_size", "sampler", "pruner",
    "pilot", "diagnostics", "report", "refresh", "study_file", "cli", "tasks", "instability",
)

__all__ = sorted(_LAZY) + ["bandit"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"advisor.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"advisor.{name}")
    raise AttributeError(f"module 'advisor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

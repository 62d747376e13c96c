"""Study files: a sweep described in one small TOML file.

A study file names the search space (``trl.GRPOConfig`` field names plus heavy-ball
``momentum``), the objective, the pilot settings, the sweep budget and the Optuna storage::

    name = "tiny-sgd"
    [objective]
    kind = "builtin:tiny"            # or "builtin:bandit", or "my_pkg.train:build"
    [search_space.learning_rate]
    type = "float"; low = 1e-3; high = 0.3; log = true
    [search_space.steps_per_generation]
    type = "int"; low = 1; high = 8
    [fixed]                          # GRPOConfig values every run shares
    per_device_train_batch_size = 16
    [pilot]
    seeds = [0, 1]
    [budget]
    n_trials = 20
    steps = 150
    [storage]
    url = "sqlite:///tiny-sgd.db"   # relative to the study file's folder (the default)

A user objective ``"module:function"`` is imported and called with no arguments; it returns a
mapping with ``model``, ``reward_funcs`` and ``train_dataset`` (and optionally
``processing_class``) for :func:`advisor.pilot.run_pilot`.

Every validation error names the key and says how to fix it.

Running a study (pilot, sweep, demo) lives in :mod:`advisor.workflow`; its names stay
importable from here.
"""

from __future__ import annotations

import importlib
from typing import Any

from advisor.study_file._parse import BUILTIN_OBJECTIVES
from advisor.study_file._parse import check_storage_url
from advisor.study_file._parse import load_study_file
from advisor.study_file._parse import parse_study
from advisor.study_file._schema import BudgetSettings
from advisor.study_file._schema import PilotSettings
from advisor.study_file._schema import StudyFile
from advisor.study_file._schema import StudyFileError
from advisor.study_file._space import ParamSpec
from advisor.study_file._space import suggest_params


# names that moved to advisor.workflow, loaded on first use (workflow imports this package)
_WORKFLOW = ("DEMO_STUDIES", "StudyPilot", "SweepSummary", "bandit_problem", "load_optuna_study",
             "load_pilot", "load_study_pilot", "make_bandit_objective", "make_study_objective",
             "run_demo", "run_study_pilot", "run_study_sweep")

__all__ = [
    "BUILTIN_OBJECTIVES", "BudgetSettings", "ParamSpec", "PilotSettings", "StudyFile",
    "StudyFileError", "check_storage_url", "load_study_file", "parse_study", "suggest_params",
]
__all__ += _WORKFLOW


def __getattr__(name: str) -> Any:
    if name in _WORKFLOW:
        return getattr(importlib.import_module("advisor.workflow"), name)
    raise AttributeError(f"module 'advisor.study_file' has no attribute {name!r}")

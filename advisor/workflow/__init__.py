"""Running a study file: the pilot, the Optuna objective and storage, the sweep, the demo.

Each step calls the library (`advisor.pilot`, `advisor.bandit`, `advisor.sampler`,
`advisor.pruner`, `advisor.report`) with the settings of a :class:`advisor.study_file.StudyFile`
and keeps its files beside the study file: ``<name>.pilot/``, the SQLite storage and
``<name>-report/``. The names are also importable from `advisor.study_file`.
"""

from __future__ import annotations

from advisor.workflow._demo import DEMO_STUDIES
from advisor.workflow._demo import run_demo
from advisor.workflow._objective import bandit_problem
from advisor.workflow._objective import make_bandit_objective
from advisor.workflow._objective import make_study_objective
from advisor.workflow._pilot import StudyPilot
from advisor.workflow._pilot import load_pilot
from advisor.workflow._pilot import load_study_pilot
from advisor.workflow._pilot import run_study_pilot
from advisor.workflow._storage import load_optuna_study
from advisor.workflow._sweep import SweepSummary
from advisor.workflow._sweep import run_study_sweep


__all__ = ["DEMO_STUDIES", "StudyPilot", "SweepSummary", "bandit_problem", "load_optuna_study",
           "load_pilot", "load_study_pilot", "make_bandit_objective", "make_study_objective",
           "run_demo", "run_study_pilot", "run_study_sweep"]

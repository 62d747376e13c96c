"""The validated study file: `StudyFile` and its settings, and `StudyFileError`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from advisor.exceptions import AdvisorError


if TYPE_CHECKING:
    from advisor.study_file._space import ParamSpec


class StudyFileError(AdvisorError, ValueError):
    """A study file is malformed or inconsistent; the message names the key and the fix."""
    # tracebacks and doctests name it where users import it from
    __module__ = "advisor.study_file"


def _fail(key: str, constraint: str, value: Any, hint: str = "") -> StudyFileError:
    return StudyFileError(f"`{key}` must be {constraint}, got {value!r}. {hint}".strip())

@dataclass(frozen=True)
class PilotSettings:
    """How the pilot runs (see :func:`advisor.pilot.run_pilot`).

    Attributes:
        seeds: Seeds of the learning-rate scan (>= 2 to see seed-to-seed noise).
        planned_steps: Optimizer steps of the run the pilot plans for (default: ``budget.steps``).
        budget_steps: Total optimizer steps the pilot may spend (default: 3x planned_steps).
    """

    seeds: tuple[int, ...] = (0, 1)
    planned_steps: int | None = None
    budget_steps: int | None = None


@dataclass(frozen=True)
class BudgetSettings:
    """The sweep budget.

    Attributes:
        n_trials: Trials per ``sweep`` call.
        steps: Optimizer steps per trial.
        timeout: Optional wall-clock limit of the sweep in seconds.
    """

    n_trials: int = 20
    steps: int = 150
    timeout: float | None = None


@dataclass(frozen=True)
class StudyFile:
    """A validated study file (build it with :func:`load_study_file` or :func:`parse_study`).

    Attributes:
        name: Study name (also the Optuna study name and the stem of its files).
        path: The TOML file (``None`` for a study built in memory).
        objective: ``"builtin:bandit"``, ``"builtin:tiny"`` or a ``"module:function"`` entry point.
        search_space: Dimension name -> :class:`ParamSpec`.
        fixed: GRPOConfig values shared by every run.
        pilot: :class:`PilotSettings`.
        budget: :class:`BudgetSettings`.
        storage: Optuna storage URL.
        description: Free text.
        report_momenta: Momenta of the stability map panels (empty = chosen from the space).
        objective_options: Other keys of ``[objective]`` (``problem`` for the bandit:
            ``reference``, ``hard_prompt`` or ``five_arm``).

    Example:
        >>> from advisor.study_file import parse_study
        >>> s = parse_study({"name": "demo", "objective": {"kind": "builtin:bandit"},
        ...                  "search_space": {"learning_rate": {"type": "float", "low": 0.01,
        ...                                                     "high": 10.0, "log": True}},
        ...                  "storage": {"url": "sqlite:///:memory:"}})
        >>> s.name, sorted(s.search_space), s.budget.n_trials
        ('demo', ['learning_rate'], 20)
    """

    name: str
    path: Path | None
    objective: str
    search_space: Mapping[str, ParamSpec]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    pilot: PilotSettings = PilotSettings()
    budget: BudgetSettings = BudgetSettings()
    storage: str = ""
    description: str = ""
    report_momenta: tuple[float, ...] = ()
    objective_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        """Folder holding the study's files (the study file's folder, or ``studies/``)."""
        return self.path.parent if self.path is not None else Path("studies")

    @property
    def pilot_path(self) -> Path:
        """Where the pilot result is saved: ``<dir>/<name>.pilot``."""
        return self.directory / f"{self.name}.pilot"

    @property
    def report_dir(self) -> Path:
        """Where the report is written: ``<dir>/<name>-report``."""
        return self.directory / f"{self.name}-report"

    @property
    def fingerprint(self) -> str:
        """Hash of what the pilot depends on (objective, fixed values, pilot settings).

        A saved pilot stamped with another fingerprint belongs to a different study.
        """
        blob = json.dumps({"objective": self.objective, "fixed": dict(self.fixed),
                           "seeds": list(self.pilot.seeds), "steps": self.planned_steps},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def planned_steps(self) -> int:
        """Optimizer steps of the planned run (``pilot.planned_steps`` or ``budget.steps``)."""
        return self.pilot.planned_steps or self.budget.steps

    def distributions(self) -> dict[str, Any]:
        """Search space as ``{name: optuna distribution}``."""
        return {name: spec.distribution() for name, spec in self.search_space.items()}

    def value(self, name: str, default: Any = None) -> Any:
        """A knob's fixed value, or the geometric/arithmetic middle of its range, or ``default``.

        Example:
            >>> from advisor.study_file import parse_study
            >>> s = parse_study({"name": "d", "objective": {"kind": "builtin:bandit"},
            ...     "search_space": {"momentum": {"type": "float", "low": 0.0, "high": 0.8}},
            ...     "storage": {"url": "sqlite:///:memory:"}})
            >>> s.value("momentum"), s.value("beta", 0.04)
            (0.4, 0.04)
        """
        if name in self.fixed:
            return self.fixed[name]
        spec = self.search_space.get(name)
        if spec is None:
            return default
        if spec.type == "categorical":
            return spec.choices[len(spec.choices) // 2]
        mid = spec.grid(3)
        return mid[len(mid) // 2]

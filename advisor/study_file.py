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
    url = "sqlite:///studies/tiny-sgd.db"   # default: <name>.db beside the study file

A user objective ``"module:function"`` is imported and called with no arguments; it returns a
mapping with ``model``, ``reward_funcs`` and ``train_dataset`` (and optionally
``processing_class``) for :func:`advisor.pilot.run_pilot`.

Every validation error names the key and says how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Literal

from advisor.exceptions import AdvisorError


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject installs tomli there)
    import tomli as tomllib


__all__ = [
    "BUILTIN_OBJECTIVES",
    "DEMO_STUDIES",
    "BudgetSettings",
    "ParamSpec",
    "PilotSettings",
    "StudyFile",
    "StudyFileError",
    "StudyPilot",
    "SweepSummary",
    "bandit_problem",
    "check_storage_url",
    "load_optuna_study",
    "load_pilot",
    "load_study_file",
    "load_study_pilot",
    "make_bandit_objective",
    "make_study_objective",
    "parse_study",
    "run_demo",
    "run_study_pilot",
    "run_study_sweep",
    "suggest_params",
]

BUILTIN_OBJECTIVES = ("builtin:bandit", "builtin:tiny")
_BANDIT_PROBLEMS = ("reference", "hard_prompt", "five_arm")
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOP_KEYS = ("name", "description", "objective", "search_space", "fixed", "pilot", "budget",
             "storage", "report")


class StudyFileError(AdvisorError, ValueError):
    """A study file is malformed or inconsistent; the message names the key and the fix."""


def _fail(key: str, constraint: str, value: Any, hint: str = "") -> StudyFileError:
    return StudyFileError(f"`{key}` must be {constraint}, got {value!r}. {hint}".strip())


@dataclass(frozen=True)
class ParamSpec:
    """One search-space dimension.

    Attributes:
        name: GRPOConfig field name (or ``momentum``).
        type: ``"float"``, ``"int"`` or ``"categorical"``.
        low: Lower bound (float/int).
        high: Upper bound (float/int).
        log: Log-uniform sampling (float/int; needs ``low > 0``).
        choices: The values of a categorical dimension.

    Example:
        >>> spec = ParamSpec(name="learning_rate", type="float", low=1e-4, high=1e-1, log=True)
        >>> spec.distribution()
        FloatDistribution(high=0.1, log=True, low=0.0001, step=None)
    """

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        """The equivalent ``optuna.distributions`` object."""
        from optuna.distributions import CategoricalDistribution
        from optuna.distributions import FloatDistribution
        from optuna.distributions import IntDistribution

        if self.type == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return CategoricalDistribution(self.choices)

    def grid(self, n: int) -> list[Any]:
        """``n`` evenly spaced values (log-spaced when ``log``); all choices if categorical.

        Example:
            >>> ParamSpec(name="momentum", type="float", low=0.0, high=0.9).grid(4)
            [0.0, 0.3, 0.6, 0.9]
        """
        import numpy as np

        if self.type == "categorical":
            return list(self.choices)
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        vals = np.geomspace(lo, hi, n) if self.log else np.linspace(lo, hi, n)
        if self.type == "int":
            return sorted({int(round(v)) for v in vals})
        return [round(float(v), 12) for v in vals]


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


def _knob_names() -> frozenset[str]:
    from advisor.knobs import KNOB_NAMES

    return frozenset(KNOB_NAMES) | {"momentum"}


def _check_name(key: str, name: str, known: frozenset[str]) -> None:
    if name in known:
        return
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = (f"Did you mean {close[0]!r}?" if close
            else "Use trl.GRPOConfig field names or `momentum`.")
    raise _fail(key, "a GRPOConfig field name or `momentum`", name, hint)


def _parse_param(name: str, raw: Any) -> ParamSpec:
    key = f"search_space.{name}"
    if not isinstance(raw, Mapping):
        raise _fail(key, "a table like {type = \"float\", low = 1e-4, high = 1e-1}", raw)
    kind = raw.get("type", "categorical" if "choices" in raw else "float")
    if kind not in ("float", "int", "categorical"):
        raise _fail(f"{key}.type", "one of 'float', 'int', 'categorical'", kind)
    unknown = sorted(set(raw) - {"type", "low", "high", "log", "choices"})
    if unknown:
        raise _fail(key, "a table with keys type/low/high/log/choices",
                    f"extra key {unknown[0]!r}", "Remove it.")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(f"{key}.choices", "a non-empty list", choices)
        return ParamSpec(name=name, type="categorical", choices=tuple(choices))
    low, high, log = raw.get("low"), raw.get("high"), raw.get("log", False)
    number = int if kind == "int" else (int, float)
    for bound, val in (("low", low), ("high", high)):
        if isinstance(val, bool) or not isinstance(val, number):
            raise _fail(f"{key}.{bound}", f"a{'n integer' if kind == 'int' else ' number'}", val,
                        f"Set `{bound} = ...` in [{key}].")
    if not isinstance(log, bool):
        raise _fail(f"{key}.log", "true or false", log)
    if not low < high:  # type: ignore[operator]
        raise _fail(f"{key}.low", f"smaller than high = {high!r}", low,
                    "Swap the bounds, or move the knob to [fixed] if it does not vary.")
    if log and low <= 0:  # type: ignore[operator]
        raise _fail(f"{key}.low", "> 0 when log = true", low)
    return ParamSpec(name=name, type=kind, low=low, high=high, log=log)


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(key, f"a table ([{key}])", value)
    return value


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, "an integer >= 1", value)
    return value


def _parse_objective(raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    section = _section(raw, "objective")
    extra = sorted(set(section) - {"kind", "problem"})
    if extra:
        raise _fail(f"objective.{extra[0]}", "absent ([objective] takes kind and problem)",
                    section[extra[0]], "Remove it.")
    kind = section.get("kind")
    if kind is None:
        raise _fail("objective.kind", "set", None,
                    "Add [objective] kind = \"builtin:tiny\" (or \"builtin:bandit\", or "
                    "\"package.module:function\").")
    if not isinstance(kind, str) or not (kind in BUILTIN_OBJECTIVES or _ENTRY_POINT.match(kind)):
        raise _fail("objective.kind", "'builtin:bandit', 'builtin:tiny' or 'module:function'",
                    kind)
    options = {}
    if "problem" in section:
        if kind != "builtin:bandit" or section["problem"] not in _BANDIT_PROBLEMS:
            raise _fail("objective.problem", "one of " + ", ".join(map(repr, _BANDIT_PROBLEMS))
                        + " with kind = 'builtin:bandit'", section["problem"])
        options["problem"] = section["problem"]
    return kind, options


def _parse_storage(raw: Mapping[str, Any], name: str, directory: Path) -> str:
    url = _section(raw, "storage").get("url")
    if url is None:
        return f"sqlite:///{(directory / f'{name}.db').resolve()}"
    if not isinstance(url, str) or "://" not in url:
        raise _fail("storage.url", "a database URL like 'sqlite:///studies/x.db' or "
                    "'postgresql://user:pass@host/db'", url)
    check_storage_url(url, base=directory)
    return url


def check_storage_url(url: str, *, base: Path | None = None) -> None:
    """Raise :class:`StudyFileError` when a SQLite URL points into a missing folder.

    Example:
        >>> check_storage_url("sqlite:///no/such/dir/x.db")
        Traceback (most recent call last):
        ...
        advisor.study_file.StudyFileError: `storage.url` must be a SQLite file in an existing \
folder, got 'sqlite:///no/such/dir/x.db'. Create the folder first: mkdir -p no/such/dir
    """
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return
    db = Path(url[len("sqlite:///"):])
    if not db.parent.is_dir():
        raise _fail("storage.url", "a SQLite file in an existing folder", url,
                    f"Create the folder first: mkdir -p {db.parent}")


def parse_study(raw: Mapping[str, Any], *, path: Path | None = None) -> StudyFile:
    """Validate the parsed TOML of a study file.

    Args:
        raw: The TOML document as a mapping.
        path: Where it came from (relative storage and pilot paths are resolved beside it).

    Returns:
        The validated :class:`StudyFile`.

    Raises:
        StudyFileError: A key is missing, unknown or out of range (the message says which).

    Example:
        >>> parse_study({"name": "x", "objective": {"kind": "builtin:bandit"},
        ...              "search_space": {}})
        Traceback (most recent call last):
        ...
        advisor.study_file.StudyFileError: `search_space` must be a non-empty table, got {}. \
Add at least one knob, e.g. [search_space.learning_rate] type = "float", low = 1e-4, high = \
1e-1, log = true.
    """
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise _fail(unknown[0], "a known top-level key (" + ", ".join(_TOP_KEYS) + ")",
                    unknown[0], "Remove it or fix its spelling.")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail("name", "a name of letters, digits, '-', '_' or '.'", name,
                    "Add name = \"my-study\" at the top of the file.")
    objective, options = _parse_objective(raw)
    space_raw = raw.get("search_space")
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise _fail("search_space", "a non-empty table", space_raw,
                    "Add at least one knob, e.g. [search_space.learning_rate] type = \"float\", "
                    "low = 1e-4, high = 1e-1, log = true.")
    known = _knob_names()
    space = {}
    for pname, spec in space_raw.items():
        _check_name(f"search_space.{pname}", pname, known)
        space[pname] = _parse_param(pname, spec)
    fixed = dict(_section(raw, "fixed"))
    for fname in fixed:
        _check_name(f"fixed.{fname}", fname, known)
        if fname in space:
            raise _fail(f"fixed.{fname}", "absent when the knob is searched", fixed[fname],
                        f"Remove it from [fixed] or from [search_space.{fname}].")
    return StudyFile(
        name=name, path=path, objective=objective, search_space=space, fixed=fixed,
        pilot=_parse_pilot(_section(raw, "pilot")), budget=_parse_budget(_section(raw, "budget")),
        storage=_parse_storage(raw, name, path.parent if path is not None else Path("studies")),
        description=str(raw.get("description", "")),
        report_momenta=tuple(float(m) for m in _section(raw, "report").get("momenta", ())),
        objective_options=options,
    )


def _parse_pilot(section: Mapping[str, Any]) -> PilotSettings:
    seeds = section.get("seeds", [0, 1])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail("pilot.seeds", "a non-empty list of integers", seeds)
    planned = section.get("planned_steps")
    budget = section.get("budget_steps")
    return PilotSettings(
        seeds=tuple(seeds),
        planned_steps=None if planned is None else _positive_int("pilot.planned_steps", planned),
        budget_steps=None if budget is None else _positive_int("pilot.budget_steps", budget),
    )


def _parse_budget(section: Mapping[str, Any]) -> BudgetSettings:
    timeout = section.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise _fail("budget.timeout", "a positive number of seconds", timeout)
    return BudgetSettings(n_trials=_positive_int("budget.n_trials", section.get("n_trials", 20)),
                          steps=_positive_int("budget.steps", section.get("steps", 150)),
                          timeout=None if timeout is None else float(timeout))


def load_study_file(path: str | Path) -> StudyFile:
    """Read and validate a study file.

    Args:
        path: The ``.toml`` file.

    Returns:
        The validated :class:`StudyFile`.

    Raises:
        StudyFileError: The file is missing, is not valid TOML, or fails validation.

    Example:
        >>> load_study_file("studies/bandit-demo.toml").objective
        'builtin:bandit'
    """
    p = Path(path)
    if not p.is_file():
        raise StudyFileError(f"study file {str(p)!r} does not exist. Pass the path of a .toml "
                             "file (examples are in studies/).")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"study file {str(p)!r} is not valid TOML: {exc}. Fix the syntax "
                             "(strings need quotes; tables are [section]).") from None
    return parse_study(raw, path=p)


# ------------------------------------------------------------------------------------------
# running a study: pilot, Optuna study, sweep (each step calls the library)
# ------------------------------------------------------------------------------------------
_STAMP = "study.json"


@dataclass(frozen=True)
class StudyPilot:
    """A pilot saved for a study.

    Attributes:
        study_name: The study it was run for.
        fingerprint: :attr:`StudyFile.fingerprint` of that study.
        objective: The study's objective.
        path: The ``<name>.pilot`` folder.
        result: The :class:`advisor.pilot.PilotResult` (TRL objectives), else ``None``.
        curves: The bandit pilot's curves (``PilotCurve`` keyword dicts), else ``None``.
        problem: The bandit problem's fields (bandit objective), else ``None``.
        defaults: Model knobs of the pilot's base ``GRPOConfig`` (batch, group size,
            optimizer), used where a configuration does not set them.
        start_reward: Mean reward at step 0.
    """

    study_name: str
    fingerprint: str
    objective: str
    path: Path
    result: Any = None
    curves: Sequence[Mapping[str, Any]] | None = None
    problem: Mapping[str, Any] | None = None
    start_reward: float | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def model(self) -> Any:
        """The calibrated :class:`advisor.stability.StabilityModel`.

        Knobs a configuration leaves out take the pilot's base ``GRPOConfig`` values (batch,
        group size, optimizer), so the calibrated edge is read at the pilot's batch.
        """
        if self.result is not None:
            return self.result.model(defaults=dict(self.defaults) or None)
        from advisor.bandit import BanditProblem

        return _bandit_model(BanditProblem(**dict(self.problem or {})), self.curves or ())

    def knob_defaults(self, study: StudyFile) -> dict[str, Any]:
        """Values of the knobs ``study`` does not search: its [fixed] over the pilot's config."""
        merged = {**self.defaults, **study.fixed}
        return {k: v for k, v in merged.items() if k not in study.search_space}

    def report(self, study: StudyFile, *, optuna_study: Any = None) -> Any:
        """The feasibility report of ``study`` from this pilot (and finished trials)."""
        from advisor.report import build_report

        return build_report(self.model(), study=study, pilot=self.result,
                            optuna_study=optuna_study, fixed=self.knob_defaults(study),
                            start_reward=self.start_reward)

    def summary(self) -> str:
        """A few lines: stiffness, edge, cost."""
        m = self.model()
        est = m.estimate
        lines = [f"pilot of study {self.study_name!r} ({self.objective})",
                 f"  stiffness K = {est.stiffness:.4g} +- {est.std_error or 0:.2g} per unit lr"]
        if m.edge is not None:
            lines.append(f"  measured edge: rate eta*K/(1-mu) = {m.edge.rate:.3g} "
                         f"(bracket {m.edge.low:.3g}-{m.edge.high:.3g}, {m.edge.n_runs} runs)")
        else:
            lines.append("  no measured edge: the theory layer decides (exact for the bandit)")
        if self.result is not None and hasattr(self.result, "summary"):
            lines.append(str(self.result.summary()))
        return "\n".join(lines)


def _stamp(study: StudyFile) -> dict[str, Any]:
    return {"study": study.name, "fingerprint": study.fingerprint, "objective": study.objective}


def load_pilot(path: str | Path, *, study: StudyFile | None = None) -> StudyPilot:
    """Load a saved pilot (a ``<name>.pilot`` folder, or the study file it belongs to).

    Args:
        path: The pilot folder or a ``.toml`` study file.
        study: If given, the pilot must have been run for this study.

    Raises:
        StudyFileError: No pilot there, or it belongs to a different study.
    """
    p = Path(path)
    if p.suffix == ".toml":
        study = load_study_file(p)
        p = study.pilot_path
    stamp_file = p / _STAMP
    if not stamp_file.is_file():
        hint = (f"Run `grpo-advisor pilot {study.path}` first." if study is not None
                and study.path is not None else "Run `grpo-advisor pilot STUDY.toml` first.")
        raise StudyFileError(f"no saved pilot at {str(p)!r}. {hint}")
    stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
    if study is not None and (stamp.get("study") != study.name
                              or stamp.get("fingerprint") != study.fingerprint):
        raise StudyFileError(
            f"the pilot at {str(p)!r} was run for study {stamp.get('study')!r} "
            f"(fingerprint {stamp.get('fingerprint')}), not for {study.name!r} "
            f"(fingerprint {study.fingerprint}): its objective, fixed knobs or pilot settings "
            "differ. Rerun `grpo-advisor pilot --force` for this study.")
    result = curves = None
    if stamp["objective"] == "builtin:bandit":
        curves = json.loads((p / "curves.json").read_text(encoding="utf-8"))
    else:
        from advisor.pilot import PilotResult

        result = PilotResult.load(p / "result")
    return StudyPilot(study_name=stamp["study"], fingerprint=stamp["fingerprint"],
                      objective=stamp["objective"], path=p, result=result, curves=curves,
                      problem=stamp.get("problem"), start_reward=stamp.get("start_reward"),
                      defaults=stamp.get("defaults", {}))


def load_study_pilot(study: StudyFile) -> StudyPilot:
    """The saved pilot of ``study`` (checked to belong to it)."""
    return load_pilot(study.pilot_path, study=study)


def bandit_problem(study: StudyFile) -> Any:
    """The :class:`advisor.bandit.BanditProblem` of a ``builtin:bandit`` study.

    ``fixed.beta`` overrides the problem's KL coefficient; the problem is named by
    ``[report]``-independent key ``objective.problem`` (default ``reference``).
    """
    from advisor.bandit import BanditProblem

    name = study.objective_options.get("problem", "reference")
    overrides = {"beta": float(study.fixed["beta"])} if "beta" in study.fixed else {}
    return getattr(BanditProblem, name)(**overrides)


def _bandit_pilot(study: StudyFile) -> list[dict[str, Any]]:
    """Pilot on the bandit: relaxation curves at two small lrs (on-policy) and one lagged.

    The infinite-group expected update is simulated, so the curves are noise-free; the sliding
    lag-2 curve gives the split K = K_c + K_o.
    """
    from advisor.bandit import simulate

    problem = bandit_problem(study)
    n_steps, lrs, lag = 3000, (0.02, 0.05), 2
    on = simulate(problem, learning_rate=list(lrs), n_steps=n_steps)
    off = simulate(problem, learning_rate=lrs[1], refresh_interval=lag, refresh_scheme="sliding",
                   n_steps=n_steps)
    curves = [{"rewards": on.reward_used[i].tolist(), "learning_rate": lr}
              for i, lr in enumerate(lrs)]
    curves.append({"rewards": off.reward_used[0].tolist(), "learning_rate": lrs[1],
                   "refresh_interval": lag, "refresh_scheme": "sliding"})
    return curves


def _bandit_model(study_or_problem: Any, curves: Sequence[Mapping[str, Any]]) -> Any:
    from advisor.stability import StabilityModel
    from advisor.stiffness import PilotCurve
    from advisor.stiffness import estimate_stiffness

    est = estimate_stiffness([PilotCurve(**c) for c in curves])
    # 1500 simulated steps per nonlinear check (default 4000): a run just above the edge of
    # these problems diverges within a few hundred steps, and the check runs per trial
    return StabilityModel(est, problem=study_or_problem, simulation_steps=1500)


def _trl_inputs(study: StudyFile) -> dict[str, Any]:
    """model / reward_funcs / train_dataset / processing_class for a TRL objective."""
    if study.objective == "builtin:tiny":
        from advisor.tasks import builtin_task

        task = builtin_task()
        return {"model": task.model_path, "reward_funcs": list(task.reward_funcs),
                "train_dataset": task.train_dataset, "processing_class": task.tokenizer,
                "start_reward": task.base_success}
    import importlib

    module_name, func_name = study.objective.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise StudyFileError(f"`objective.kind` must name an importable function, got "
                             f"{study.objective!r} ({exc}). Check the module is on PYTHONPATH."
                             ) from None
    built = func()
    missing = [k for k in ("model", "reward_funcs", "train_dataset") if k not in built]
    if missing:
        raise StudyFileError(f"{study.objective} must return a mapping with model, reward_funcs "
                             f"and train_dataset, got keys {sorted(built)} (missing {missing}).")
    return dict(built)


def run_study_pilot(study: StudyFile, *, force: bool = False, progress: bool = True
                    ) -> StudyPilot:
    """Run (or resume, or reuse) the pilot of ``study`` and save it to ``study.pilot_path``.

    Args:
        study: The study.
        force: Rerun even when a pilot for this study is saved.
        progress: Show progress bars.

    Returns:
        The saved :class:`StudyPilot`.

    Raises:
        StudyFileError: The saved pilot belongs to a different study (pass ``force``).
    """
    path = study.pilot_path
    if (path / _STAMP).is_file() and not force:
        return load_study_pilot(study)
    if force and path.is_dir():
        import shutil

        shutil.rmtree(path)  # a forced pilot must not resume from the old runs
    path.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(study)
    if study.objective == "builtin:bandit":
        curves = _bandit_pilot(study)
        start = float(bandit_problem(study).start_reward)
        (path / "curves.json").write_text(json.dumps(curves), encoding="utf-8")
    else:
        result, start, args = _trl_pilot(study, path, progress=progress)
        result.save(path / "result")
        stamp["defaults"] = _config_defaults(args)
    stamp["start_reward"] = start
    if study.objective == "builtin:bandit":
        import dataclasses

        stamp["problem"] = {k: list(v) if isinstance(v, tuple) else v
                            for k, v in dataclasses.asdict(bandit_problem(study)).items()}
    (path / _STAMP).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    return load_study_pilot(study)


def _config_defaults(args: Any) -> dict[str, Any]:
    """The model knobs of a ``GRPOConfig`` (batch, group size, optimizer), JSON-ready."""
    from advisor.knobs import MODEL_KNOB_NAMES

    skip = {"momentum", "learning_rate", "generation_batch_size", "steps_per_generation"}
    out: dict[str, Any] = {}
    for name in sorted(MODEL_KNOB_NAMES - skip):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value if isinstance(value, (bool, int, float)) else str(
                getattr(value, "value", value))
    return out


def _trl_pilot(study: StudyFile, path: Path, *, progress: bool
               ) -> tuple[Any, float | None, Any]:
    from advisor.pilot import run_pilot
    from advisor.tasks import default_config

    inputs = _trl_inputs(study)
    start = inputs.pop("start_reward", None)
    args = inputs.pop("args", None) or default_config(
        str(path / "runs"), **{"max_steps": study.planned_steps, **_config_kwargs(study.fixed)})
    result = run_pilot(inputs["model"], inputs["reward_funcs"], inputs["train_dataset"], args,
                       processing_class=inputs.get("processing_class"),
                       planned_steps=study.planned_steps, budget_steps=study.pilot.budget_steps,
                       seeds=study.pilot.seeds, output_dir=str(path / "runs"),
                       progress=progress)
    return result, start if start is not None else getattr(result, "start_reward", None), args


def _config_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    from advisor.knobs import to_grpo_kwargs

    return to_grpo_kwargs(dict(params))


# -- Optuna studies ------------------------------------------------------------------------
def _storage(study: StudyFile, storage: str | None) -> Any:
    """An Optuna RDB storage for the study's (or the given) URL, with a clear error if down."""
    import optuna

    url = storage or study.storage
    check_storage_url(url)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:  # sqlalchemy raises many types: connection, driver, URL
        reason = " ".join(str(exc).split())[:300]
        raise StudyFileError(
            f"cannot open the Optuna storage {_redact(url)!r}: {reason}. Check that the "
            "database server is running and reachable (host, port, user, password), or use "
            "the default SQLite storage.") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # PostgreSQL: fail in seconds instead of the driver's default (minutes) when unreachable
    return {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def load_optuna_study(study: StudyFile, *, storage: str | None = None,
                      must_exist: bool = True) -> Any:
    """The Optuna study of ``study`` from its storage (``None`` if absent and not required).

    Raises:
        StudyFileError: The storage is unreachable, or the study is missing and required.
    """
    import optuna

    url = storage or study.storage
    if not must_exist and url.startswith("sqlite:///") and not Path(url[10:]).exists():
        return None
    store = _storage(study, storage)
    try:
        return optuna.load_study(study_name=study.name, storage=store)
    except KeyError:
        if must_exist:
            raise StudyFileError(f"no Optuna study {study.name!r} in {_redact(url)!r}. Run "
                                 "`grpo-advisor sweep` first.") from None
        return None


def suggest_params(trial: Any, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Suggest every dimension of ``space`` on an Optuna trial (``learning_rate`` last).

    Example:
        >>> import optuna
        >>> t = optuna.create_study().ask()
        >>> p = suggest_params(t, {"momentum": ParamSpec(name="momentum", type="float",
        ...                                              low=0.0, high=0.9)})
        >>> 0.0 <= p["momentum"] <= 0.9
        True
    """
    out: dict[str, Any] = {}
    for name in sorted(space, key=lambda n: n == "learning_rate"):
        spec = space[name]
        if spec.type == "float":
            out[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        elif spec.type == "int":
            out[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
        else:
            out[name] = trial.suggest_categorical(name, list(spec.choices))
    return out


def make_bandit_objective(study: StudyFile) -> Any:
    """Optuna objective on the exact bandit reduction (``builtin:bandit``).

    Each trial simulates ``budget.steps`` optimizer steps with the trial's learning rate,
    heavy-ball momentum, refresh interval and group size; it reports the reward every few steps
    and returns the mean reward of the current policy over the run (fast learners score high).
    A run that diverges is marked ``advisor:collapsed``; like `advisor.pilot.make_objective` it
    still completes, with the start reward standing in for the steps after the divergence.
    """
    import numpy as np
    import optuna

    from advisor.bandit import simulate
    from advisor.dynamics import Regime
    from advisor.knobs import knobs_from_params

    problem = bandit_problem(study)
    steps = study.budget.steps
    stride = max(1, steps // 25)  # ~25 reports: enough for the pruner's fit, few DB writes

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, study.search_space)
        k = knobs_from_params({**study.fixed, **params}, defaults={"optim": "sgd"})
        g = int(params.get("num_generations", study.fixed.get("num_generations", 0))) or None
        run = simulate(problem, learning_rate=k.learning_rate, momentum=k.heavy_ball_momentum,
                       refresh_interval=int(round(k.refresh_interval)), num_generations=g,
                       n_steps=steps, seed=trial.number)
        used, cur = run.reward_used[0], run.reward_current[0]
        collapsed = bool(run.diverged[0]) or run.regimes()[0] == Regime.DIVERGENT
        trial.set_user_attr("advisor:collapsed", collapsed)
        for step in range(0, steps, stride):
            if not np.isfinite(used[step]):
                break
            trial.report(float(used[step]), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")
        return float(np.mean(np.where(np.isfinite(cur), cur, problem.start_reward)))

    return objective


def make_study_objective(study: StudyFile) -> Any:
    """The Optuna objective of ``study``: the bandit, or real TRL training via the pilot module."""
    if study.objective == "builtin:bandit":
        return make_bandit_objective(study)
    from advisor.pilot import make_objective
    from advisor.tasks import default_config

    inputs = _trl_inputs(study)
    out = study.directory / f"{study.name}-trials"
    args = inputs.get("args") or default_config(
        str(out), **{"max_steps": study.budget.steps, **_config_kwargs(study.fixed)})
    return make_objective(inputs["model"], inputs["reward_funcs"], inputs["train_dataset"], args,
                          search_space=lambda trial: suggest_params(trial, study.search_space),
                          processing_class=inputs.get("processing_class"), output_dir=out)


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep produced.

    Attributes:
        study_name: Optuna study name.
        storage: Storage URL (password redacted).
        n_finished: Finished trials in the study (all workers, all sessions).
        n_complete: Completed trials.
        n_pruned: Pruned trials.
        n_collapsed: Trials that collapsed (``advisor:collapsed``, or failed).
        best_value: Best objective value (``None`` without a completed trial).
        best_params: Its parameters.
        report_path: The updated HTML report (``None`` if not written).
        seconds: Wall time of this sweep.
        fixed: The study's fixed knobs (shown with the best parameters).
    """

    study_name: str
    storage: str
    n_finished: int
    n_complete: int
    n_pruned: int
    n_collapsed: int
    best_value: float | None
    best_params: Mapping[str, Any]
    report_path: Path | None
    seconds: float
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def collapse_rate(self) -> float:
        """Collapsed / finished trials (0 without trials)."""
        return self.n_collapsed / self.n_finished if self.n_finished else 0.0

    def explain(self) -> str:
        """A short plain-text summary."""
        lines = [f"study {self.study_name!r} in {self.storage}: {self.n_finished} finished "
                 f"trials ({self.n_complete} complete, {self.n_pruned} pruned, "
                 f"{self.n_collapsed} collapsed: collapse rate {self.collapse_rate:.0%}), "
                 f"{self.seconds:.0f} s"]
        if self.best_value is not None:
            lines.append(f"best value {self.best_value:.4g} with")
            from advisor.knobs import to_grpo_kwargs

            lines.append("  GRPOConfig(" + ", ".join(
                f"{k}={v!r}" for k, v in to_grpo_kwargs(
                    {**self.fixed, **self.best_params}).items()) + ")")
        if self.report_path is not None:
            lines.append(f"report updated: {self.report_path}")
        return "\n".join(lines)


def _sampler_and_pruner(study: StudyFile, pilot: StudyPilot | None, guided: bool,
                        seed: int | None) -> tuple[Any, Any]:
    import optuna

    if not guided or pilot is None:
        return (optuna.samplers.TPESampler(seed=seed),
                optuna.pruners.MedianPruner(n_warmup_steps=max(1, study.budget.steps // 5)))
    from advisor.pruner import TrajectoryPruner
    from advisor.sampler import StableRegionSampler

    sampler = StableRegionSampler(model=pilot.model(), search_space=study.distributions(),
                                  defaults=pilot.knob_defaults(study), seed=seed)
    statistic = "mean" if study.objective == "builtin:bandit" else "final"
    pruner = TrajectoryPruner(n_steps=study.budget.steps, statistic=statistic,
                              n_warmup_steps=10, n_startup_trials=2)
    return sampler, pruner


def _worker(path: str, storage: str | None, n_trials: int, guided: bool, seed: int,
            progress: bool) -> None:
    """One sweep worker (also the body of the single-process sweep)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study_file(path)
    pilot = load_study_pilot(study) if guided else None
    sampler, pruner = _sampler_and_pruner(study, pilot, guided, seed)
    ostudy = optuna.create_study(study_name=study.name, storage=_storage(study, storage),
                                 sampler=sampler, pruner=pruner, direction="maximize",
                                 load_if_exists=True)
    ostudy.optimize(make_study_objective(study), n_trials=n_trials,
                    timeout=study.budget.timeout, show_progress_bar=progress)


def run_study_sweep(study: StudyFile, *, storage: str | None = None, n_trials: int | None = None,
                    n_workers: int = 1, guided: bool = True, progress: bool = True,
                    write_report: bool = True) -> SweepSummary:
    """Run the advisor-guided sweep of ``study`` and update its report.

    Args:
        study: A study loaded from a file (workers reload it by path).
        storage: Storage URL overriding the study's (e.g. PostgreSQL for many machines).
        n_trials: Trials in total over all workers (default ``budget.n_trials``).
        n_workers: Worker processes sharing the storage.
        guided: Use ``StableRegionSampler`` + ``TrajectoryPruner`` (needs the pilot);
            ``False`` runs plain TPE + MedianPruner.
        progress: Progress bar.
        write_report: Rewrite the feasibility report with the finished trials.

    Raises:
        StudyFileError: No pilot (guided), unreachable storage, or a study without a file.
    """
    import time

    if study.path is None:
        raise StudyFileError("`study.path` must be set: sweep workers reload the study file.")
    if n_workers < 1:
        raise StudyFileError(f"`n_workers` must be an integer >= 1, got {n_workers!r}.")
    total = n_trials or study.budget.n_trials
    pilot = load_study_pilot(study) if guided else None  # fail early, before any worker
    _storage(study, storage)  # fail early on an unreachable database
    t0 = time.perf_counter()
    if n_workers == 1:
        _worker(str(study.path), storage, total, guided, 0, progress)
    else:
        _run_workers(study, storage, total, n_workers, guided, progress)
    ostudy = load_optuna_study(study, storage=storage)
    report_path = None
    if write_report and pilot is not None:
        report_path = pilot.report(study, optuna_study=ostudy).write(study.report_dir)["html"]
    return _summarise(study, storage, ostudy, report_path, time.perf_counter() - t0)


def _run_workers(study: StudyFile, storage: str | None, total: int, n_workers: int,
                 guided: bool, progress: bool) -> None:
    import multiprocessing as mp

    shares = [total // n_workers + (i < total % n_workers) for i in range(n_workers)]
    ctx = mp.get_context("spawn")  # torch/trl are not fork-safe
    procs = [ctx.Process(target=_worker, args=(str(study.path), storage, n, guided, 1000 + i,
                                               False))
             for i, n in enumerate(shares) if n > 0]
    before = _n_finished(study, storage)
    for p in procs:
        p.start()
    if progress:
        _poll_progress(study, storage, total, procs, before)
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise StudyFileError(f"{len(bad)} of {len(procs)} sweep workers failed (exit codes "
                             f"{bad}); rerun with --n-workers 1 --debug to see the error.")


def _n_finished(study: StudyFile, storage: str | None) -> int:
    ostudy = load_optuna_study(study, storage=storage, must_exist=False)
    if ostudy is None:
        return 0
    return sum(t.state.is_finished() for t in ostudy.get_trials(deepcopy=False))


def _poll_progress(study: StudyFile, storage: str | None, total: int, procs: list[Any],
                   before: int) -> None:
    """One progress bar for all workers, read from the shared storage every second."""
    import time

    from tqdm.auto import tqdm

    with tqdm(total=total, desc=f"{len(procs)} workers", unit="trial") as bar:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            bar.update(min(total, _n_finished(study, storage) - before) - bar.n)


def _summarise(study: StudyFile, storage: str | None, ostudy: Any, report_path: Path | None,
               seconds: float) -> SweepSummary:
    from optuna.trial import TrialState

    done = [t for t in ostudy.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    collapsed = [t for t in done if t.user_attrs.get("advisor:collapsed", False)
                 or t.user_attrs.get("advisor:prune_reason") == "collapse"
                 or t.state == TrialState.FAIL]
    best = max(complete, key=lambda t: t.value) if complete else None
    return SweepSummary(study_name=study.name, storage=_redact(storage or study.storage),
                        n_finished=len(done), n_complete=len(complete),
                        n_pruned=sum(t.state == TrialState.PRUNED for t in done),
                        n_collapsed=len(collapsed),
                        best_value=None if best is None else float(best.value),
                        best_params={} if best is None else dict(best.params),
                        report_path=report_path, seconds=seconds, fixed=dict(study.fixed))


# -- the one-command demo --------------------------------------------------------------------
DEMO_STUDIES: dict[str, str] = {
    "tiny": """\
name = "demo-tiny"
description = "grpo-advisor demo: AdamW on the built-in tiny addition task (real TRL, CPU)."
[objective]
kind = "builtin:tiny"
[search_space.learning_rate]
type = "float"
low = 1e-5
high = 1e-1
log = true
[search_space.steps_per_generation]
type = "int"
low = 1
high = 8
[fixed]
optim = "adamw_torch"
[pilot]
seeds = [0, 1]
[budget]
n_trials = 8
steps = 60
""",
    "bandit": """\
name = "demo-bandit"
description = "grpo-advisor demo: heavy-ball SGD on the exact 2-arm GRPO bandit."
[objective]
kind = "builtin:bandit"
problem = "reference"
[search_space.learning_rate]
type = "float"
low = 0.01
high = 100.0
log = true
[search_space.momentum]
type = "float"
low = 0.0
high = 0.9
[search_space.steps_per_generation]
type = "int"
low = 1
high = 16
[fixed]
optim = "sgd"
[budget]
n_trials = 30
steps = 400
""",
}


def run_demo(directory: str | Path, *, objective: Literal["tiny", "bandit"] = "tiny",
             n_trials: int | None = None, progress: bool = True) -> SweepSummary:
    """The main job on a fresh machine: pilot, report, a short guided sweep, summary.

    Writes ``demo-<objective>.toml`` into ``directory`` and keeps the pilot, the SQLite study
    and the report beside it (rerunning reuses the pilot and adds trials).

    Args:
        directory: Working folder (created if its parent exists).
        objective: ``"tiny"`` (real TRL GRPO on CPU) or ``"bandit"`` (seconds).
        n_trials: Sweep trials (default: the demo study's budget).
        progress: Progress bars.

    Returns:
        The sweep summary; ``report_path`` is the HTML report.
    """
    out = Path(directory)
    if objective not in DEMO_STUDIES:
        raise StudyFileError(f"`objective` must be one of {sorted(DEMO_STUDIES)}, got "
                             f"{objective!r}.")
    if not out.parent.is_dir():
        raise StudyFileError(f"the demo folder's parent {str(out.parent)!r} does not exist. "
                             "Create it first, or pass another --output.")
    out.mkdir(exist_ok=True)
    path = out / f"demo-{objective}.toml"
    path.write_text(DEMO_STUDIES[objective], encoding="utf-8")
    study = load_study_file(path)
    pilot = run_study_pilot(study, progress=progress)
    print(pilot.summary(), flush=True)
    print(f"pre-sweep report: {pilot.report(study).write(study.report_dir)['html']}",
          flush=True)
    return run_study_sweep(study, n_trials=n_trials, progress=progress)

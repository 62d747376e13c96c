"""Reading a study file: TOML -> validated `StudyFile` (every error names the key and the fix)."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.study_file._schema import BudgetSettings
from advisor.study_file._schema import PilotSettings
from advisor.study_file._schema import StudyFile
from advisor.study_file._schema import StudyFileError
from advisor.study_file._schema import _fail
from advisor.study_file._space import _check_name
from advisor.study_file._space import _knob_names
from advisor.study_file._space import _parse_param
from advisor.study_file._space import check_knob_value


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject installs tomli there)
    import tomli as tomllib


BUILTIN_OBJECTIVES = ("builtin:bandit", "builtin:tiny")
_BATCH_KNOBS = frozenset({"per_device_train_batch_size", "num_generations",
                          "steps_per_generation", "generation_batch_size",
                          "gradient_accumulation_steps"})
_BANDIT_PROBLEMS = ("reference", "hard_prompt", "five_arm")
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOP_KEYS = ("name", "description", "objective", "search_space", "fixed", "pilot", "budget",
             "storage", "report")
# the keys each table takes; anything else is a typo that would otherwise be ignored silently
_SECTION_KEYS = {"objective": ("kind", "problem"),
                 "pilot": ("seeds", "planned_steps", "budget_steps"),
                 "budget": ("n_trials", "steps", "timeout"), "storage": ("url",),
                 "report": ("momenta",)}


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(key, f"a table ([{key}])", value)
    allowed = _SECTION_KEYS.get(key)
    extra = sorted(set(value) - set(allowed)) if allowed is not None else []
    if extra:
        import difflib

        close = difflib.get_close_matches(extra[0], allowed, n=1)
        hint = f"Did you mean {close[0]!r}?" if close else "Remove it."
        raise _fail(f"{key}.{extra[0]}", f"a known key of [{key}] (" + ", ".join(allowed) + ")",
                    extra[0], hint)
    return value


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, "an integer >= 1", value)
    return value


def _parse_objective(raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    section = _section(raw, "objective")
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
    check_storage_url(url, base=directory)
    return _resolve_sqlite(url, directory)


def _resolve_sqlite(url: str, base: Path | None) -> str:
    """A relative SQLite path in a study file is beside the file, wherever the command runs."""
    if base is None or not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return url
    db = Path(url[len("sqlite:///"):])
    return url if db.is_absolute() else f"sqlite:///{(base / db).resolve()}"


def check_storage_url(url: str, *, base: Path | None = None, key: str = "storage.url") -> None:
    """Raise :class:`StudyFileError` when ``url`` is not a database URL, or is a SQLite file
    in a missing folder (or a folder itself).

    Args:
        url: An Optuna/SQLAlchemy storage URL.
        base: Folder that a relative SQLite path is relative to (default: the current one).
        key: The setting named in the error (``storage.url`` or ``--storage``).

    Example:
        >>> check_storage_url("sqlite:///no/such/dir/x.db")
        Traceback (most recent call last):
        ...
        advisor.study_file.StudyFileError: `storage.url` must be a SQLite file in an existing \
folder, got 'sqlite:///no/such/dir/x.db'. Create the folder first: mkdir -p no/such/dir
    """
    if not isinstance(url, str) or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise _fail(key, "a database URL like 'sqlite:///studies/x.db' or "
                    "'postgresql://user:pass@host/db'", url)
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return
    db = Path(_resolve_sqlite(url, base)[len("sqlite:///"):])
    if db.is_dir():
        raise _fail(key, "a SQLite file, not a folder", url,
                    f"Name a file inside it, e.g. sqlite:///{db / 'study.db'}")
    if not db.parent.is_dir():
        raise _fail(key, "a SQLite file in an existing folder", url,
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
        check_knob_value(f"fixed.{fname}", fname, fixed[fname])
    _check_combination(space, fixed)
    return StudyFile(
        name=name, path=path, objective=objective, search_space=space, fixed=fixed,
        pilot=_parse_pilot(_section(raw, "pilot")), budget=_parse_budget(_section(raw, "budget")),
        storage=_parse_storage(raw, name, path.parent if path is not None else Path("studies")),
        description=str(raw.get("description", "")),
        report_momenta=_parse_momenta(_section(raw, "report")),
        objective_options=options,
    )


def _check_combination(space: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """The fixed knobs with one value of each searched knob must make a valid GRPO config
    (e.g. `momentum` with an AdamW `optim`, or both `steps_per_generation` and
    `generation_batch_size`). A batch that does not hold whole groups is only an error when
    no batch knob is searched: other points of the space may still hold whole groups."""
    from advisor.knobs import MODEL_KNOB_NAMES
    from advisor.knobs import knobs_from_params

    params = {name: spec.choices[0] if spec.type == "categorical" else spec.low
              for name, spec in space.items()}
    params.setdefault("learning_rate", 1e-3)  # any valid rate: only the combination is checked
    try:
        knobs_from_params({k: v for k, v in {**fixed, **params}.items()
                           if k in MODEL_KNOB_NAMES})
    except ValueError as exc:
        if "divisible" in str(exc) and set(space) & _BATCH_KNOBS:
            return
        where = "[fixed]" if not set(space) & MODEL_KNOB_NAMES - {"learning_rate"} else (
            "[fixed] and [search_space]")
        raise StudyFileError(f"the knobs in {where} do not make a valid GRPOConfig: "
                             f"{' '.join(str(exc).split())}") from None


def _parse_momenta(section: Mapping[str, Any]) -> tuple[float, ...]:
    momenta = section.get("momenta", [])
    if not isinstance(momenta, list) or not all(
            isinstance(m, (int, float)) and not isinstance(m, bool) and 0 <= m < 1
            for m in momenta):
        raise _fail("report.momenta", "a list of momenta in [0, 1)", momenta,
                    "E.g. momenta = [0.0, 0.9].")
    return tuple(float(m) for m in momenta)


def _parse_pilot(section: Mapping[str, Any]) -> PilotSettings:
    seeds = section.get("seeds", [0, 1])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail("pilot.seeds", "a non-empty list of integers", seeds)
    if len(set(seeds)) < 2:
        raise _fail("pilot.seeds", "at least two different seeds", seeds,
                    "The pilot compares seeds to tell a collapse from noise: e.g. [0, 1].")
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
    if p.is_dir():
        raise StudyFileError(f"study file {str(p)!r} is a folder, not a file. Pass the path of "
                             "a .toml study file (examples are in studies/).")
    if not p.is_file():
        raise StudyFileError(f"study file {str(p)!r} does not exist. Pass the path of a .toml "
                             "file (examples are in studies/).")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise StudyFileError(f"study file {str(p)!r} is not UTF-8 text. Pass a .toml study "
                             "file (examples are in studies/).") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"study file {str(p)!r} is not valid TOML: {exc}. Fix the syntax "
                             "(strings need quotes; tables are [section]).") from None
    return parse_study(raw, path=p)

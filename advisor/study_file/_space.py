"""Search-space dimensions: `ParamSpec`, their validation, and `suggest_params`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from typing import Literal

from advisor.study_file._schema import _fail


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

# Value domains of the knobs the model reads (and a few TRL ones that fail late when wrong):
# kind, low, low_closed, high, high_closed. Sources: advisor.knobs.Knobs and trl.GRPOConfig.
_DOMAINS: dict[str, tuple[str, float | None, bool, float | None, bool]] = {
    "learning_rate": ("float", 0.0, False, None, True),
    "momentum": ("float", 0.0, True, 1.0, False),
    "adam_beta1": ("float", 0.0, True, 1.0, False),
    "adam_beta2": ("float", 0.0, True, 1.0, False),
    "beta": ("float", 0.0, True, None, True),
    "temperature": ("float", 0.0, False, None, True),
    "steps_per_generation": ("int", 1, True, None, True),
    "num_iterations": ("int", 1, True, None, True),
    "gradient_accumulation_steps": ("int", 1, True, None, True),
    "per_device_train_batch_size": ("int", 1, True, None, True),
    "generation_batch_size": ("int", 1, True, None, True),
    "max_completion_length": ("int", 1, True, None, True),
    "num_generations": ("int", 2, True, None, True),
}
# set by the study's [budget] steps (the pruner and the report read it there)
_BUDGET_KNOBS = ("max_steps", "num_train_epochs")


def _domain_text(name: str) -> str:
    kind, lo, lo_closed, hi, hi_closed = _DOMAINS[name]
    what = "an integer" if kind == "int" else "a number"
    if hi is None:
        return f"{what} {'>=' if lo_closed else '>'} {lo:g}"
    return f"{what} in {'[' if lo_closed else '('}{lo:g}, {hi:g}{']' if hi_closed else ')'}"


def check_knob_value(key: str, name: str, value: Any) -> None:
    """Raise `StudyFileError` (naming ``key``) when ``value`` is outside knob ``name``'s domain.

    Example:
        >>> check_knob_value("fixed.momentum", "momentum", 1.5)
        Traceback (most recent call last):
        ...
        advisor.study_file.StudyFileError: `fixed.momentum` must be a number in [0, 1), got 1.5.
    """
    if name in _BUDGET_KNOBS:
        raise _fail(key, "absent (the run length is the study's [budget] steps)", value,
                    "Set [budget] steps = ... instead.")
    if name in ("optim", "optim_args") and not isinstance(value, str):
        raise _fail(key, "a string", value)
    if name not in _DOMAINS:
        return
    kind, lo, lo_closed, hi, hi_closed = _DOMAINS[name]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and (kind == "float" or isinstance(value, int)) and math.isfinite(value)
    if ok:
        ok = (value >= lo if lo_closed else value > lo) if lo is not None else True
        ok = ok and ((value <= hi if hi_closed else value < hi) if hi is not None else True)
    if not ok:
        raise _fail(key, _domain_text(name), value)


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
        for c in choices:
            check_knob_value(f"{key}.choices", name, c)
        if len(set(map(repr, choices))) < len(choices):
            raise _fail(f"{key}.choices", "a list without repeats", choices)
        return ParamSpec(name=name, type="categorical", choices=tuple(choices))
    if name in _DOMAINS and _DOMAINS[name][0] == "int" and kind != "int":
        raise _fail(f"{key}.type", "'int' (or 'categorical') for an integer knob", kind,
                    f"Set type = \"int\" in [{key}].")
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
    check_knob_value(f"{key}.low", name, low)
    check_knob_value(f"{key}.high", name, high)
    return ParamSpec(name=name, type=kind, low=low, high=high, log=log)

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

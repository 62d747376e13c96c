"""One message template for bad input: "`name` must be <constraint>, got <value>."."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt


def _fail(name: str, constraint: str, value: Any, hint: str = "", where: str = ""
          ) -> ValueError:
    msg = f"`{name}` must be {constraint}, got {value!r}{where}."
    return ValueError(f"{msg} {hint}".strip())


def _unwrap_0d(value: Any) -> Any:
    """A 0-d numpy array -> its numpy scalar (so ``np.array(0.1)`` is accepted as 0.1)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def check_real(name: str, value: Any) -> float:
    """Return ``value`` as a float, raising TypeError for non-numbers (bools included).

    Python and numpy real scalars and 0-d numeric arrays are accepted.

    Example:
        >>> check_real("plateau", np.array(0.5))
        0.5
    """
    value = _unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__} {value!r}.")
    return float(value)


def check_interval(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_closed: bool = True,
    high_closed: bool = True,
    hint: str = "",
) -> float:
    """Check that a finite real lies in an interval and return it as a float.

    Example:
        >>> check_interval("momentum", 0.9, low=0.0, high=1.0, high_closed=False)
        0.9
    """
    x = check_real(name, value)
    lo_br, hi_br = ("[" if low_closed else "("), ("]" if high_closed else ")")
    lo_s = "-inf" if low is None else f"{low:g}"
    hi_s = "inf" if high is None else f"{high:g}"
    constraint = f"a finite number in {lo_br}{lo_s}, {hi_s}{hi_br}"
    if not math.isfinite(x):
        raise _fail(name, constraint, value, hint)
    if low is not None and (x < low or (x == low and not low_closed)):
        raise _fail(name, constraint, value, hint)
    if high is not None and (x > high or (x == high and not high_closed)):
        raise _fail(name, constraint, value, hint)
    return x


def check_int(name: str, value: Any, *, low: int | None = None, hint: str = "") -> int:
    """Check that ``value`` is an integer (not a bool) at least ``low``.

    Example:
        >>> check_int("refresh_interval", 4, low=1)
        4
    """
    value = _unwrap_0d(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"`{name}` must be an integer, got {type(value).__name__} {value!r}.")
    if low is not None and value < low:
        raise _fail(name, f"an integer >= {low}", value, hint)
    return int(value)


def check_options(name: str, value: Any, options: Iterable[str]) -> str:
    """Check that ``value`` is one of ``options``.

    Example:
        >>> check_options("refresh_scheme", "sliding", ("piecewise", "sliding"))
        'sliding'
    """
    opts = tuple(options)
    if value not in opts:
        raise _fail(name, "one of " + ", ".join(repr(o) for o in opts), value)
    return str(value)


def _numeric_array(name: str, values: Any, what: str) -> npt.NDArray[np.float64]:
    """``values`` as a float64 array; TypeError for strings, None, booleans and non-numbers."""
    if values is None or isinstance(values, (str, bytes)):
        raise TypeError(f"`{name}` must be {what}, got {type(values).__name__} {values!r}.")
    raw = np.asarray(values)
    if raw.dtype.kind == "O":  # mixed lists: convert, then check each entry's type
        flat = raw.ravel()
        bad = [v for v in flat if isinstance(v, (str, bytes, bool, np.bool_)) or v is None]
        if bad:
            raise TypeError(f"`{name}` must be {what}, got an entry {bad[0]!r} of type "
                            f"{type(bad[0]).__name__}.")
    elif raw.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "S": "bytes", "c": "complex numbers"}.get(
            raw.dtype.kind, f"dtype {raw.dtype}")
        raise TypeError(f"`{name}` must be {what}, got {kind}"
                        + (f" ({values!r})." if raw.size <= 8 else ".")
                        + (" Convert with .astype(float) if 0/1 values are meant."
                           if raw.dtype.kind == "b" else ""))
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be {what}: {exc}.") from None


def as_float_array(
    name: str,
    values: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_closed: bool = True,
    high_closed: bool = True,
    hint: str = "",
) -> npt.NDArray[np.float64]:
    """An array-like of finite reals in an interval, as a float64 array of the same shape.

    Scalars give 0-d arrays. Strings, None, booleans and non-numbers raise TypeError; the first
    value outside the interval (or non-finite) raises ValueError naming its index.

    Example:
        >>> as_float_array("momentum", [0.0, 0.9], low=0.0, high=1.0, high_closed=False)
        array([0. , 0.9])
    """
    arr = _numeric_array(name, values, "a real number or an array of them")
    lo_br, hi_br = ("[" if low_closed else "("), ("]" if high_closed else ")")
    lo_s = "-inf" if low is None else f"{low:g}"
    hi_s = "inf" if high is None else f"{high:g}"
    ok = np.isfinite(arr)
    with np.errstate(invalid="ignore"):
        if low is not None:
            ok &= (arr >= low) if low_closed else (arr > low)
        if high is not None:
            ok &= (arr <= high) if high_closed else (arr < high)
    if not ok.all():
        i = int(np.flatnonzero(~ok.ravel())[0])
        index = tuple(int(j) for j in np.unravel_index(i, arr.shape))
        where = "" if arr.ndim == 0 else f" at index {index[0] if arr.ndim == 1 else index}"
        raise _fail(name, f"a finite number in {lo_br}{lo_s}, {hi_s}{hi_br}",
                    float(arr.ravel()[i]), hint, where)
    return arr


def as_finite_1d(
    name: str,
    values: Any,
    *,
    nan_policy: Literal["raise", "omit"] = "raise",
    min_length: int = 1,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Convert a sequence to a 1-D float array and apply an explicit NaN policy.

    Returns the array (non-finite entries dropped when ``nan_policy="omit"``) and the boolean
    mask of kept entries in the original sequence, so callers can record how many were dropped.

    Example:
        >>> x, kept = as_finite_1d("rewards", [0.1, float("nan"), 0.3], nan_policy="omit")
        >>> x.tolist(), int((~kept).sum())
        ([0.1, 0.3], 1)
    """
    check_options("nan_policy", nan_policy, ("raise", "omit"))
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"`{name}` must be a sequence of numbers, got {type(values).__name__}.")
    arr = _numeric_array(name, values, "a sequence of numbers")
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got an array of shape {arr.shape}.")
    kept = np.isfinite(arr)
    if not kept.all():
        if nan_policy == "raise":
            bad = int(np.flatnonzero(~kept)[0])
            raise ValueError(
                f"`{name}` must be finite, got {float(arr[bad])!r} at index {bad}. "
                "Pass nan_policy='omit' to drop non-finite points (the count is recorded)."
            )
        arr = arr[kept]
    if arr.size < min_length:
        raise _fail(name, f"of length >= {min_length} after dropping non-finite values",
                    f"length {arr.size}")
    return arr, kept


def finite_json(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by ``None`` (nested dicts, lists, tuples):
    strict JSON, which jq and browsers accept.

    Example:
        >>> finite_json({"zeta": float("inf"), "rows": [1.0, float("nan")]})
        {'zeta': None, 'rows': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value

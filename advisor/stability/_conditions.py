"""Input handling of `StabilityModel`: condition arrays, knob arrays and their validation."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from advisor._validation import _numeric_array
from advisor._validation import as_float_array
from advisor._validation import check_options
from advisor.exceptions import AdvisorWarning
from advisor.stability._theory import FloatArray


METHODS = ("auto", "theory", "exact", "closed_form", "calibrated")


@dataclasses.dataclass(frozen=True)
class _StiffnessSummary:
    """The four numbers the model reads from a StiffnessEstimate (used by ``from_dict``)."""

    stiffness: float
    stiffness_current: float | None
    stiffness_sampler: float | None
    std_error: float | None


def _optional_float(value: Any, name: str = "value") -> float | None:
    """``value`` as a float, None for None or non-finite; TypeError for strings and bools."""
    if value is None:
        return None
    # strings ("0.5") and booleans (True = 1.0) are wrong types, not numbers to convert
    bad = isinstance(value, (str, bytes, bool, np.bool_))
    try:
        out = math.nan if bad else float(value)
    except (TypeError, ValueError):
        bad = True
    if bad:
        raise TypeError(f"`{name}` must be a real number or None, got {type(value).__name__} "
                        f"{value!r}.")
    return out if math.isfinite(out) else None


def _factorize(values: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """Distinct values and the code of each entry; O(n) for small non-negative integers."""
    v = np.asarray(values)
    if v.ndim == 1 and v.size and v.strides[0] == 0:  # a broadcast scalar
        return v[:1].copy(), np.zeros(v.size, np.int64)
    if v.dtype.kind in "iub" and v.size and v.min() >= 0 and v.max() < 2**22:
        v = v.astype(np.int64)
        present = np.zeros(int(v.max()) + 1, bool)
        present[v] = True
        lookup = np.cumsum(present) - 1
        return np.flatnonzero(present), lookup[v].astype(np.int64)
    if v.dtype.kind not in "iufb":
        v = v.astype(str)
    uniq, inv = np.unique(v, return_inverse=True)
    return uniq, inv.ravel().astype(np.int64)


def _check_conditions(mu: FloatArray, lag: FloatArray, scheme: str, optimizer: str) -> None:
    bad = ~(np.isfinite(mu) & (mu >= 0.0) & (mu < 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`momentum` must be a finite number in [0, 1), got {float(mu[i])!r} at "
                         f"index {i}.")
    if optimizer == "adamw" and (mu != 0.0).any():
        raise ValueError(f"`momentum` must be 0 for AdamW, got {float(mu[mu != 0][0])!r}. "
                         "Heavy-ball momentum is SGD's; adam_beta1 does not enter the model.")
    low = 1.0 if scheme == "piecewise" else 0.0
    bad = ~(np.isfinite(lag) & (lag >= low))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`refresh_interval` must be a finite number >= {low:g} for the "
                         f"{scheme} scheme, got {float(lag[i])!r} at index {i}.")


def _integer_lag(lag: FloatArray, stacklevel: int = 3) -> npt.NDArray[np.int64]:
    """Round K_ref to whole optimizer steps (TRL's spg*num_iterations/GA can be fractional)."""
    rounded = np.rint(lag)
    if (np.abs(rounded - lag) > 1e-9).any():
        warnings.warn("A fractional refresh interval was rounded to whole optimizer steps "
                      f"(e.g. {lag[np.abs(rounded - lag) > 1e-9][0]:g}); the linear theory needs "
                      "an integer period.", AdvisorWarning, stacklevel=stacklevel)
    return rounded.astype(np.int64)


def condition_arrays(
    *,
    learning_rate: Any,
    momentum: Any,
    refresh_interval: Any,
    refresh_scheme: str,
    samples_per_step: Any,
    num_iterations: Any,
    method: str,
    optimizer: str,
) -> tuple[tuple[int, ...], FloatArray, FloatArray, npt.NDArray[np.int64], Any, FloatArray]:
    """Validated, flattened ``(shape, lr, mu, K_ref, samples, n_it)`` of the array API.

    ``learning_rate`` may be None (then ``lr`` is a dummy of ones); ``samples`` is None when
    ``samples_per_step`` is.
    """
    check_options("refresh_scheme", refresh_scheme, ("piecewise", "sliding"))
    check_options("method", method, METHODS)
    columns = {
        "learning_rate": 1.0 if learning_rate is None else as_float_array(
            "learning_rate", learning_rate, low=0.0, low_closed=False),
        "momentum": as_float_array("momentum", momentum, low=0.0, high=1.0, high_closed=False,
                                   hint="Heavy-ball momentum mu = 1 never relaxes."),
        # range checked by _check_conditions (scheme-dependent message)
        "refresh_interval": _numeric_array("refresh_interval", refresh_interval,
                                           "a real number or an array of them"),
        "samples_per_step": np.nan if samples_per_step is None else as_float_array(
            "samples_per_step", samples_per_step, low=0.0, low_closed=False,
            hint="Completions per optimizer step; None uses the edge's."),
        "num_iterations": as_float_array("num_iterations", num_iterations, low=1.0,
                                         hint="TRL's num_iterations, an integer >= 1."),
    }
    n_it = columns["num_iterations"]
    if np.any(n_it != np.round(n_it)):
        bad = n_it[n_it != np.round(n_it)]
        raise ValueError(f"`num_iterations` must be an integer >= 1, got {float(bad.flat[0])!r}.")
    try:
        lr, mu, lag, samples, n_it = np.broadcast_arrays(
            *(np.asarray(v, float) for v in columns.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in columns.items())
        raise ValueError(f"The condition arrays must broadcast to one shape, got {shapes}. "
                         "Use numpy broadcasting shapes, e.g. (n, 1) against (m,).") from None
    shape = lr.shape
    lr, mu, lag, samples, n_it = (np.ascontiguousarray(v).ravel()
                                  for v in (lr, mu, lag, samples, n_it))
    _check_conditions(mu, lag, refresh_scheme, optimizer)
    return (shape, lr, mu, _integer_lag(lag, 4), None if samples_per_step is None else samples,
            n_it)


def knob_arrays(
    params: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None,
    num_processes: int,
    optimizer: str,
    check_optimizer: Callable[[str], None],
) -> tuple[FloatArray, ...]:
    """Arrays (lr, mu, K_ref, completions per step, num_iterations) from knob arrays.

    Discrete knobs are resolved once per distinct combination by `advisor.knobs`.
    """
    from advisor.knobs import knobs_from_params

    if not isinstance(params, Mapping):
        raise TypeError("`params` must be a mapping of GRPOConfig-named knobs to arrays (a dict "
                        f"or a pandas DataFrame), got {type(params).__name__}.")
    if "learning_rate" not in params:
        raise ValueError("`params` must contain 'learning_rate', got keys "
                         f"{sorted(params)!r}.")
    cols = {k: np.asarray(v) for k, v in params.items()}
    try:
        n = int(np.prod(np.broadcast_shapes(*(c.shape for c in cols.values())) or (1,)))
    except ValueError:
        shapes = ", ".join(f"{k} {c.shape}" for k, c in cols.items())
        raise ValueError(f"`params` values must be scalars or 1-D arrays of one length, got "
                         f"{shapes}.") from None
    cols = {k: np.broadcast_to(c, (n,)) if c.ndim <= 1 else c for k, c in cols.items()}
    if any(c.ndim != 1 for c in cols.values()):
        raise ValueError("`params` values must be scalars or 1-D arrays of one length.")
    lr = as_float_array("learning_rate", cols.pop("learning_rate"), low=0.0, low_closed=False)
    mom = cols.pop("momentum", None)
    if mom is not None:  # NaN (or None) marks rows without heavy-ball momentum (AdamW)
        if mom.dtype.kind == "O":
            mom = np.array([np.nan if v is None else v for v in mom], dtype=object)
        mom = _numeric_array("momentum", mom, "a real number or an array of them (NaN: none)")
    key = np.zeros(n, np.int64)
    extra = [] if mom is None else [np.isfinite(mom)]
    for c in [*cols.values(), *extra]:
        _, code = _factorize(c)
        key = key * (int(code.max()) + 1) + code
    keys, inverse = _factorize(key)
    first = np.empty(keys.size, np.int64)
    first[inverse[::-1]] = np.arange(n)[::-1]  # one representative row per group
    group = np.empty((len(first), 4))
    for g, i in enumerate(first):
        rep: dict[str, Any] = {k: c[i].item() if hasattr(c[i], "item") else c[i]
                               for k, c in cols.items()}
        rep["learning_rate"] = 1.0
        if mom is not None and np.isfinite(mom[i]):
            rep["momentum"] = 0.0
        kn = knobs_from_params(rep, defaults=defaults, num_processes=num_processes)
        check_optimizer(kn.optimizer)
        group[g] = (kn.heavy_ball_momentum, kn.refresh_interval, kn.completions_per_step,
                    kn.num_iterations)
    per_row = group[inverse]
    mu = per_row[:, 0]
    if mom is not None:
        mu = np.where(np.isfinite(mom), mom, mu)
    _check_conditions(mu, per_row[:, 1], "piecewise", optimizer)
    return lr, mu, _integer_lag(per_row[:, 1], 4), per_row[:, 2], per_row[:, 3]

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


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
    lr, mu, lag, samples, n_it = np.broadcast_arrays(
        np.asarray(1.0 if learning_rate is None else learning_rate, float),
        np.asarray(momentum, float), np.asarray(refresh_interval, float),
        np.asarray(np.nan if samples_per_step is None else samples_per_step, float),
        np.asarray(num_iterations, float))
    shape = lr.shape
    lr, mu, lag, samples, n_it = (np.ascontiguousarray(v).ravel()
                                  for v in (lr, mu, lag, samples, n_it))
    if not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError(f"`learning_rate` must be finite and > 0, got {learning_rate!r}.")
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

    if "learning_rate" not in params:
        raise ValueError("`params` must contain 'learning_rate', got keys "
                         f"{sorted(params)!r}.")
    cols = {k: np.asarray(v) for k, v in params.items()}
    n = int(np.prod(np.broadcast_shapes(*(c.shape for c in cols.values())) or (1,)))
    cols = {k: np.broadcast_to(c, (n,)) if c.ndim <= 1 else c for k, c in cols.items()}
    if any(c.ndim != 1 for c in cols.values()):
        raise ValueError("`params` values must be scalars or 1-D arrays of one length.")
    lr = np.asarray(cols.pop("learning_rate"), float)
    bad = ~(np.isfinite(lr) & (lr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`learning_rate` must be finite and > 0, got {float(lr[i])!r} at "
                         f"index {i}.")
    mom = cols.pop("momentum", None)
    mom = None if mom is None else np.asarray(mom, float)
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

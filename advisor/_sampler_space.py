"""Search-space helpers of `advisor.sampler.StableRegionSampler`.

Private to `advisor.sampler`: knob names and the ``search_space`` check, the discrete
learning-rate distributions (int and categorical), the guide grid of the guided start, the
vectorised draws of the repair step and the JSON-safe values of the ``advisor:`` attributes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution


LR = "learning_rate"


def _is_knob(name: str) -> bool:
    from advisor.knobs import KNOB_NAMES

    return name in KNOB_NAMES or name == "momentum"


def _check_knob_names(arg: str, names: Mapping[str, Any]) -> None:
    from advisor.knobs import KNOB_NAMES

    for name in names:
        if not _is_knob(name):
            close = difflib.get_close_matches(name, sorted(KNOB_NAMES), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"`{arg}` must use trl.GRPOConfig field names (or 'momentum'), got "
                             f"unknown knob {name!r}.{hint}")


def _check_search_space(space: Mapping[str, BaseDistribution],
                        defaults: Mapping[str, Any]) -> None:
    _check_knob_names("search_space", space)
    lr = space.get(LR)
    if lr is None:
        raise ValueError(f"`search_space` must contain 'learning_rate', got keys "
                         f"{sorted(space)}. The sampler constrains the learning rate; add "
                         "FloatDistribution(low, high, log=True) for it.")
    if not isinstance(lr, FloatDistribution) or lr.low < 0 or lr.high <= 0:
        raise ValueError(f"`search_space['learning_rate']` must be a FloatDistribution with "
                         f"low > 0 (or low = 0 on a linear scale), got {lr!r}. Use "
                         "FloatDistribution(1e-6, 1e-3, log=True), as in "
                         "trial.suggest_float('learning_rate', 1e-6, 1e-3, log=True).")
    for name, dist in space.items():
        if not isinstance(dist, BaseDistribution):
            raise TypeError(f"`search_space[{name!r}]` must be an optuna distribution, got "
                            f"{type(dist).__name__}.")
    from advisor.knobs import knobs_from_params

    corner = {k: (d.choices[0] if isinstance(d, CategoricalDistribution) else
                  d.high if k == LR else d.low) for k, d in space.items()}
    knobs_from_params({k: v for k, v in corner.items()}, defaults=defaults)  # raises if clashing


_GUIDE_LEVELS = 5  # levels per numeric knob on the guide grid


_GUIDE_MAX = 512  # most knob combinations the guide evaluates (one model call each)


def _guide_grid(space: Mapping[str, BaseDistribution],
                reference: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every categorical choice and up to ``_GUIDE_LEVELS`` levels (ends included, log-spaced
    for log distributions) per numeric knob, plus the ``reference`` value of a numeric knob when
    it lies in range (on the step grid); a product larger than ``_GUIDE_MAX`` is thinned to an
    evenly spaced subset (deterministic)."""
    import itertools

    levels: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            levels[name] = list(dist.choices)
            continue
        lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
        x = np.geomspace(lo, hi, _GUIDE_LEVELS) if dist.log and lo > 0 else \
            np.linspace(lo, hi, _GUIDE_LEVELS)  # type: ignore[attr-defined]
        ref = _numbers([(reference or {}).get(name)])
        if ref is not None and lo <= ref[0] <= hi:
            x = np.sort(np.append(x, ref[0]))
        step = getattr(dist, "step", None) or (1 if isinstance(dist, IntDistribution) else None)
        if step is not None:
            x = np.clip(lo + np.round((x - lo) / step) * step, lo, hi)
        vals = [int(v) if isinstance(dist, IntDistribution) else float(v) for v in x]
        levels[name] = list(dict.fromkeys(vals))
    combos = [dict(zip(levels, c, strict=True)) for c in itertools.product(*levels.values())]
    if len(combos) > _GUIDE_MAX:
        idx = np.unique(np.linspace(0, len(combos) - 1, _GUIDE_MAX).round().astype(int))
        combos = [combos[i] for i in idx]
    return combos


def _distance(combo: Mapping[str, Any], reference: Mapping[str, Any],
              space: Mapping[str, BaseDistribution]) -> float:
    """How far ``combo`` lies from the ``reference`` knobs: per knob the reference names, 1 for
    another categorical choice, else the gap as a share of the range (log range for log
    distributions)."""
    total = 0.0
    for name, value in combo.items():
        if name not in reference:
            continue
        dist, ref = space.get(name), reference[name]
        pair = _numbers([value, ref])
        if isinstance(dist, CategoricalDistribution) or pair is None or dist is None:
            total += 0.0 if value == ref else 1.0
            continue
        lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
        if getattr(dist, "log", False) and lo > 0 and min(pair) > 0:
            gap, span = abs(math.log(pair[0] / pair[1])), math.log(hi / lo)
        else:
            gap, span = abs(pair[0] - pair[1]), hi - lo
        total += gap / span if span > 0 else float(gap > 0)
    return total


def _numbers(values: Sequence[Any]) -> list[float] | None:
    """``values`` as finite floats, or None if one is not a real number."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
            return None
        if not math.isfinite(float(v)):
            return None
        out.append(float(v))
    return out


def _rate_range(dist: BaseDistribution, value: Any) -> FloatDistribution | None:
    """The float range the model is queried over for a learning rate of ``dist`` (an int or
    categorical rate: the span of its values); None when the values are not all numbers >= 0
    with a positive top."""
    if isinstance(dist, FloatDistribution):
        return dist
    if isinstance(dist, CategoricalDistribution):
        nums = _numbers([value, *dist.choices])
    elif isinstance(dist, IntDistribution):
        nums = _numbers([value, dist.low, dist.high])
    else:
        return None
    if nums is None or min(nums) < 0 or max(nums) <= 0:
        return None
    lo, hi = min(nums), max(nums)
    return FloatDistribution(lo, hi, log=lo > 0)


def _discrete_values(dist: BaseDistribution, cap: float) -> list[Any]:
    """The values of an int or categorical rate distribution that matter under ``cap``: every
    choice, or the int grid's lowest point and its largest point at or below ``cap``."""
    if isinstance(dist, CategoricalDistribution):
        return [c for c in dist.choices if _numbers([c]) is not None]
    assert isinstance(dist, IntDistribution)
    top = dist.low + max(0, math.floor((cap - dist.low) / dist.step)) * dist.step
    return sorted({dist.low, min(top, dist.high)})


def _draw(dist: BaseDistribution, rng: np.random.Generator, n: int) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return [dist.choices[i] for i in rng.integers(0, len(dist.choices), n)]
    lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
    x = np.exp(rng.uniform(np.log(lo), np.log(hi), n)) if dist.log else rng.uniform(lo, hi, n)  # type: ignore[attr-defined]
    step = getattr(dist, "step", None)
    if isinstance(dist, IntDistribution):
        step = step or 1
    if step is not None:
        x = np.clip(lo + np.round((x - lo) / step) * step, lo, hi)
    if isinstance(dist, IntDistribution):
        return [int(v) for v in x]
    return [float(v) for v in x]


def _unit(dist: BaseDistribution, values: Sequence[Any]) -> np.ndarray:
    if isinstance(dist, CategoricalDistribution):
        return np.array([float(dist.to_internal_repr(v)) for v in values])  # distance 0 or >= 1
    lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
    x = np.asarray(values, dtype=float)
    if dist.log:  # type: ignore[attr-defined]
        lo, hi, x = math.log(lo), math.log(hi), np.log(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

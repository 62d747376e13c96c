"""The feasible share of the search space, and each knob's feasible interval (seeded sample)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from advisor.report._document import KnobInterval


if TYPE_CHECKING:
    from advisor.stability import StabilityModel
    from advisor.study_file import ParamSpec

_LEVELS = 16  # grid levels of float knobs other than the learning rate in the feasibility sample


def _sample_space(space: Mapping[str, ParamSpec], n: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded samples of the space: learning_rate continuous, other knobs on a level grid.

    Float knobs other than the learning rate take 16 evenly spaced levels from low to high
    (log-spaced if ``log``) and integer knobs their integers, so the model sees few distinct
    (momentum, K_ref) pairs and evaluates each exactly.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            levels = np.asarray(spec.choices, dtype=object)
        elif spec.type == "int":
            levels = np.arange(int(spec.low), int(spec.high) + 1)  # type: ignore[arg-type]
        elif name == "learning_rate":
            lo, hi = float(spec.low), float(spec.high)  # type: ignore[arg-type]
            u = rng.random(n)
            out[name] = (np.exp(np.log(lo) + u * np.log(hi / lo)) if spec.log
                         else lo + u * (hi - lo))
            continue
        else:  # both ends included: a feasible interval must be able to reach them
            lo, hi = float(spec.low), float(spec.high)  # type: ignore[arg-type]
            levels = np.geomspace(lo, hi, _LEVELS) if spec.log else np.linspace(lo, hi, _LEVELS)
        if spec.type == "int" and spec.log:  # log-uniform over the integers
            w = np.log(levels + 0.5) - np.log(levels - 0.5)
            out[name] = rng.choice(levels, size=n, p=w / w.sum())
        else:
            out[name] = levels[rng.integers(len(levels), size=n)]
    return out


def _feasibility(
    model: StabilityModel, space: Mapping[str, ParamSpec], fixed: Mapping[str, Any], *,
    n_samples: int, seed: int,
) -> tuple[float | None, tuple[KnobInterval, ...]]:
    if not space:
        return None, ()
    samples = _sample_space(space, n_samples, seed)
    stable = np.zeros(n_samples, bool)
    cats = [k for k, s in space.items() if s.type == "categorical"]
    # categorical knobs (strings such as `optim`) are assessed one combination at a time
    combos = itertools.product(*(space[k].choices for k in cats)) if cats else [()]
    for combo in combos:
        sel = np.ones(n_samples, bool)
        for k, v in zip(cats, combo, strict=True):
            sel &= samples[k] == v
        if not sel.any():
            continue
        params = {**fixed, **dict(zip(cats, combo, strict=True)),
                  **{k: v[sel] for k, v in samples.items() if k not in cats}}
        stable[sel] = np.asarray(model.assess_many(params)["stable"], bool)
    intervals = []
    for name, spec in space.items():
        vals = samples[name]
        if spec.type == "categorical":
            share = {str(c): float(stable[vals == c].mean()) if (vals == c).any() else 0.0
                     for c in spec.choices}
            ok = [c for c in spec.choices if stable[vals == c].any()]
            intervals.append(KnobInterval(name=name, low=None, high=None,
                                          feasible_low=None if not ok else str(ok[0]),
                                          feasible_high=None if not ok else str(ok[-1]),
                                          feasible_fraction=share))
            continue
        good = vals[stable].astype(float)
        intervals.append(KnobInterval(
            name=name, low=spec.low, high=spec.high,
            feasible_low=float(good.min()) if good.size else None,
            feasible_high=float(good.max()) if good.size else None,
            feasible_fraction=float(stable.mean())))
    return float(stable.mean()), tuple(intervals)

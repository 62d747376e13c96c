"""One run's logged series, and the pieces every failure-mode check shares.

Rewards (and the other generation-time metrics) are carried forward over rows that do not log
them. Confidences are heuristic scores in [0.5, 1) that grow with how far a threshold is crossed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from advisor.instability import InstabilityDetector
from advisor.instability import InstabilityLabel
from advisor.instability import label_run
from advisor.instability import normalize_history


_WINDOW = 20  # steps in the "final window" of the per-mode checks


def _carry_forward(x: np.ndarray) -> np.ndarray:
    """A copy of ``x`` with each NaN replaced by the value before it."""
    out = x.copy()
    for i in range(1, len(out)):
        if np.isnan(out[i]):
            out[i] = out[i - 1]
    return out


@dataclasses.dataclass(frozen=True)
class _Run:
    """Per-row arrays of one history (NaN where not logged; generation metrics carried)."""

    steps: np.ndarray
    reward: np.ndarray  # carried forward
    logged: np.ndarray  # True where the reward was logged
    cols: Mapping[str, np.ndarray]  # raw columns (NaN where missing)
    detector: InstabilityDetector
    label: InstabilityLabel
    lr: float
    knobs: Any

    def carried(self, key: str) -> np.ndarray:
        return _carry_forward(self.cols.get(key, np.full(len(self.steps), np.nan)))

    def final(self, x: np.ndarray) -> float:
        sel = (self.steps > self.steps[-1] - _WINDOW) & np.isfinite(x)
        return float(np.mean(x[sel])) if sel.any() else math.nan

    @property
    def n_steps(self) -> int:
        return int(self.steps[-1])


def _build_run(history: Any, *, start_reward: float | None, reward_key: str, nan_policy: str,
               error: Any, knobs: Any) -> tuple[_Run, int]:
    rows = normalize_history(history)
    bad = [r["step"] for r in rows if isinstance(r.get(reward_key), (int, float))
           and not math.isfinite(float(r[reward_key]))]
    if bad and nan_policy == "raise":
        value = next(r[reward_key] for r in rows if r["step"] == bad[0])
        raise ValueError(f"`{reward_key}` must be finite, got {value!r}"
                         f" at step {bad[0]}. The run diverged there; pass nan_policy='omit' to "
                         "diagnose the finite part (the divergence is then reported).")
    label = label_run(rows, start_reward=start_reward, error=error, reward_key=reward_key)
    if bad:
        rows = [{k: v for k, v in r.items() if k != reward_key or r["step"] not in bad}
                for r in rows]
    det = InstabilityDetector(start_reward=start_reward, reward_key=reward_key)
    for r in rows:
        det.update(r)
    keys = {k for r in rows for k, v in r.items() if isinstance(v, (int, float))}
    cols = {k: np.array([float(r[k]) if isinstance(r.get(k), (int, float)) else np.nan
                         for r in rows]) for k in keys}
    logged = np.isfinite(cols.get(reward_key, np.full(len(rows), np.nan)))
    lrs = cols.get("learning_rate", np.array([np.nan]))
    lr = float(lrs[np.isfinite(lrs)][-1]) if np.isfinite(lrs).any() else math.nan
    if knobs is not None:
        lr = knobs.learning_rate
    # carry forward over rows without a reward
    reward = _carry_forward(cols.get(reward_key, np.full(len(rows), np.nan)))
    run = _Run(steps=np.array([r["step"] for r in rows]), reward=reward, logged=logged,
               cols=cols, detector=det, label=label, lr=lr, knobs=knobs)
    return run, len(bad)


def _confidence(excess: float, scale: float) -> float:
    """0.5 at the threshold, towards 1 as the excess grows (heuristic, documented above)."""
    return round(min(0.99, 1.0 - 0.5 * math.exp(-max(excess, 0.0) / scale)), 2)


class _NotChecked(Exception):
    """A mode cannot be checked on this run; the message says why."""


@dataclasses.dataclass(frozen=True)
class _Context:
    max_reward: float
    horizon: int
    model: Any
    eval_metric: Any


def _lower_lr(run: _Run, factor: float, ctx: _Context) -> dict[str, Any]:
    """lr/factor, and at most half the model's edge when a model is given."""
    if not math.isfinite(run.lr):
        return {}
    return _capped_lr(run, run.lr / factor, ctx)


def _capped_lr(run: _Run, lr: float, ctx: _Context) -> dict[str, Any]:
    """``{"learning_rate": lr}`` (2 significant digits), at most half the model's edge."""
    verdict = _verdict(run, ctx)
    if verdict is not None and math.isfinite(verdict.max_learning_rate):
        lr = min(lr, 0.5 * verdict.max_learning_rate)
    return {"learning_rate": float(f"{lr:.2g}")}


def _verdict(run: _Run, ctx: _Context) -> Any:
    if ctx.model is None or run.knobs is None:
        return None
    return ctx.model.assess(run.knobs.to_params())


def _rolling(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        w = x[max(0, i - n + 1): i + 1]
        if np.isfinite(w).any():
            out[i] = np.nanmean(w)
    return out

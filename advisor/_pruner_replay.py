"""Incremental replay of the shared instability rule for `advisor.TrajectoryPruner`.

The pruner sees a trial's whole history at every report. Feeding all of it to a fresh
`advisor.instability.InstabilityDetector` costs O(steps) per report, O(steps^2) per trial (60 ms
per report at 3,000 steps). The rule is causal, so this cache keeps, per running trial, a
detector fed with every row BEFORE the last reported step and feeds it only the new rows. The
rows of the last step go to a copy: an objective may store that step's health signals after its
report. The cache only saves time. Any miss (another worker or process, an evicted entry, a
start reward that changed, a history that does not extend the cached one) replays the trial from
its first step, so the decision still depends only on ``(study, trial)``.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable
from collections.abc import Mapping
from typing import Any

import numpy as np

from advisor.instability import InstabilityDetector
from advisor.instability import normalize_history


_CACHE_SIZE = 256  # running trials remembered per pruner (least recently used are dropped)


class _Entry:
    """A detector fed through ``last`` and how many reward / health rows that consumed."""

    __slots__ = ("detector", "last", "n_rewards", "n_health", "start")

    def __init__(self, start: float | None) -> None:
        self.detector = InstabilityDetector(start_reward=start)
        self.last = -math.inf
        self.n_rewards = 0
        self.n_health = 0
        self.start = start


class ReplayCache:
    """Per-trial detectors of the instability rule, fed incrementally.

    Example:
        >>> import numpy as np
        >>> cache = ReplayCache()
        >>> steps = np.arange(60.0)
        >>> rewards = np.where(steps < 30, 0.6, 0.2)  # a drop of 0.4 from the peak
        >>> cache.reason(("study", 0), steps[:20], rewards[:20], None, 0.3) is None
        True
        >>> cache.reason(("study", 0), steps, rewards, None, 0.3)
        'drop_from_peak'
    """

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # study.optimize(n_jobs=...) prunes from several threads

    def __getstate__(self) -> dict[str, Any]:  # a pickled pruner starts with an empty cache
        return {"_size": self._size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_size"])  # type: ignore[misc]

    def reason(self, key: Hashable, steps: np.ndarray, rewards: np.ndarray,
               health: Mapping[str, Any] | None, start: float | None) -> str | None:
        """The rule that fired on this history (None: none), as a full replay would give.

        Args:
            key: Identifies the trial (and its study and storage).
            steps: Reported steps, increasing, shape (n,) (n >= 1).
            rewards: Reported rewards (higher is better), shape (n,).
            health: The trial's ``"advisor:health"`` columns, or None.
            start: The start reward of the rule (None: from the first rewards).

        Raises:
            ValueError, TypeError, KeyError, AdvisorError: The history cannot be read (the
                pruner warns and does not prune).
        """
        hsteps = _health_steps(health)
        n_hs = 0 if hsteps is None else hsteps.size
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None or not _extends(entry, steps, hsteps, start):
                entry = _Entry(start)
            self._entries[key] = entry  # now the most recently used
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        try:
            return self._reason(key, entry, steps, rewards, health, hsteps, n_hs)
        except Exception:
            with self._lock:  # a half-fed detector must not be reused
                self._entries.pop(key, None)
            raise

    def _reason(self, key: Hashable, entry: _Entry, steps: np.ndarray, rewards: np.ndarray,
                health: Mapping[str, Any] | None, hsteps: np.ndarray | None,
                n_hs: int) -> str | None:
        # commit every row before the last reported step; the last step's rows stay provisional
        last = float(steps[-1])
        n_r = int(np.searchsorted(steps, last, side="left"))
        n_h = 0 if hsteps is None else int(np.searchsorted(hsteps, last, side="left"))
        if entry.detector.label is None:
            _feed(entry.detector, steps[entry.n_rewards:n_r], rewards[entry.n_rewards:n_r],
                  health, entry.n_health, n_h)
        fed = [float(steps[n_r - 1])] if n_r else []
        fed += [float(hsteps[n_h - 1])] if hsteps is not None and n_h else []
        entry.last = max(fed, default=-math.inf)
        entry.n_rewards, entry.n_health = n_r, n_h
        if entry.detector.label is not None:
            return str(entry.detector.label.reason)
        det = _clone(entry.detector)
        _feed(det, steps[n_r:], rewards[n_r:], health, n_h, n_hs)
        return None if det.label is None else str(det.label.reason)


def _health_steps(health: Mapping[str, Any] | None) -> np.ndarray | None:
    """The health rows' steps (increasing), or None when there are no health rows.

    Raises:
        ValueError: Columns of unequal length, or steps that are not finite and increasing
            (the pruner then warns and does not prune for collapse).
    """
    if not isinstance(health, Mapping) or not health:
        return None
    lengths = {len(v) for v in health.values()}
    if len(lengths) > 1:
        raise ValueError(f"`advisor:health` columns must have equal lengths, got "
                         f"{sorted(lengths)}.")
    n = lengths.pop()
    if n == 0:
        return None
    raw = health.get("step")
    if raw is None:  # normalize_history's default: 1..n
        return np.arange(1.0, n + 1.0)
    out = np.asarray([np.nan if v is None else v for v in raw], dtype=float)
    if not np.isfinite(out).all() or (np.diff(out) <= 0).any():
        raise ValueError("`advisor:health` steps must be finite and increasing.")
    return out


def _extends(entry: _Entry, steps: np.ndarray, hsteps: np.ndarray | None,
             start: float | None) -> bool:
    """Whether the history is the cached one plus rows after ``entry.last`` only."""
    if entry.start != start:
        return False
    for seen, col in ((entry.n_rewards, steps), (entry.n_health, hsteps)):
        n = 0 if col is None else col.size
        if seen > n:
            return False
        if col is not None and seen < n and float(col[seen]) <= entry.last:
            return False  # a row was inserted at or before a step already fed
    return True


def _feed(det: InstabilityDetector, steps: np.ndarray, rewards: np.ndarray,
          health: Mapping[str, Any] | None, h_lo: int, h_hi: int) -> None:
    """Feed the reward rows and health rows ``[h_lo, h_hi)``, merged per step, in order."""
    rows: list[dict[str, Any]] = [{"step": int(s), "reward": float(r)}
                                  for s, r in zip(steps, rewards, strict=True)]
    if health is not None and h_hi > h_lo:
        part = {k: list(v[h_lo:h_hi]) for k, v in health.items()}
        if "step" not in part:  # normalize_history numbers column rows 1..n
            part["step"] = list(range(h_lo + 1, h_hi + 1))
        rows += normalize_history(part)
    if not rows:
        return
    for row in normalize_history(rows):
        if det.update(row) is not None:
            return


def _clone(det: InstabilityDetector) -> InstabilityDetector:
    """A copy whose lists can grow without touching ``det`` (O(n) at C speed)."""
    out = copy.copy(det)
    for name, value in vars(det).items():
        if isinstance(value, list):
            setattr(out, name, list(value))
    return out

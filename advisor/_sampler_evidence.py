"""Online evidence of `StableRegionSampler`: what the finished trials say about the edge.

Private to `advisor.sampler`. The storage is the truth (the evidence lives in each trial's
``advisor:`` user attributes and parameters, so it works across workers and restarts); this
module only avoids re-reading finished trials, which never change. Per (storage, study) it keeps

* the evidence of every finished trial read so far: ``r = learning_rate / advisor:lr_max_model``,
  whether it collapsed, and its numeric knobs in the unit box;
* the number of the next trial it has not read and the trials it read while they were still
  running (they are re-read until they finish).

Each refresh reads only the running trials it knows and the trials created since the last one
(one ``get_trial`` each), so the cost per sampled trial does not grow with the study; a fresh
cache or a large backlog reads the study once in bulk (``deepcopy=False``).

Two edge factors come out of the evidence:

* the **global** factor ``s`` (`edge_factor` over all trials; sorted arrays are kept up to date
  by insertion, so no re-sort per trial): the model is off by ``s`` everywhere;
* the **local** factor of a knob combination ``x``: every collapse within ``radius`` of ``x``
  (Euclidean distance over the numeric knobs, each mapped to [0, 1] over its declared range, log
  for log distributions; categorical knobs are ignored, so a collapse protects every choice)
  caps ``x`` (the lowest such collapse decides): the local factor is the geometric midpoint
  between the collapse's ratio ``r_c`` and the highest stable ratio ``b`` below it within
  ``radius`` of ``x``, but at most ``b e^m`` (``m`` the safety margin) and at least ``r_c / 2``,
  its value without a stable run below (a stable run far below the collapse is no evidence for
  a lower edge): ``max(r_c / 2, min(sqrt(r_c b), b e^m))``. The cap ``factor e^-m`` never
  exceeds ``max(b, r_c e^-m / 2)``, so trials sampled under it cannot raise it (no creep
  towards the collapse): only a stable run above the cap widens it, and never past the
  midpoint. One collapse inside the region shrinks its neighbourhood at the next trial of any
  worker, even when stable runs elsewhere keep the global factor where it is.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from advisor.instability import trial_collapsed


if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial


LR = "learning_rate"
_MAX_INCREMENTAL = 64  # new trials read one by one per refresh; more: one bulk read


def edge_factor_sorted(r: np.ndarray, y: np.ndarray, prior: float) -> float:
    """`advisor.sampler.edge_factor` on ratios already sorted ascending (stable order).

    Example:
        >>> edge_factor_sorted(np.array([0.2, 0.5, 0.7]), np.array([False, False, True]), 1.0)
        0.5916079783099616
    """
    if r.size == 0:
        return prior
    # errors(s) for s in [r_k, r_{k+1}): stable above + collapsed below
    # = #stable + sum_{i <= k} (+1 if collapsed else -1)
    steps = np.where(y, 1, -1)
    err = np.empty(r.size + 1, dtype=np.int64)
    err[0] = r.size - int(y.sum())
    np.cumsum(steps, out=err[1:])
    err[1:] += err[0]
    return _factor(r, err, prior)


def _factor(r: np.ndarray, err: np.ndarray, prior: float) -> float:
    """The edge factor from sorted ratios ``r`` and the error count ``err[k]`` of each interval
    ``[cand[k], cand[k + 1])``, ``cand = [0, r...]`` (`edge_factor`'s rule)."""
    if r.size == 0:
        return prior
    k0 = int(np.searchsorted(r, prior, side="right"))  # interval holding the prior
    least = err.min()
    if err[k0] == least:
        return prior
    best = np.flatnonzero(err == least)
    k = int(best[np.argmin(np.abs(best - k0))])
    start = float(r[k - 1]) if k > 0 else 0.0  # the interval is [start, r[k])
    if k > k0:  # raise: up to the highest stable ratio of the minimising interval
        return start
    upper = float(r[k])  # lower: the interval ends at a collapse
    # midpoint with the highest stable ratio below, never below upper / 2: a stable run far
    # below a collapse is no evidence that the edge is lower than without it
    lower = max(start, upper / 4.0)
    return float(math.sqrt(lower * upper))


def unit_coordinate(dist: BaseDistribution, value: Any) -> float:
    """``value`` mapped to [0, 1] over ``dist``'s range (log for log distributions); NaN for a
    categorical distribution or a value that is not a number.

    Example:
        >>> from optuna.distributions import FloatDistribution
        >>> unit_coordinate(FloatDistribution(1e-3, 1e1, log=True), 1e-1)
        0.5
    """
    if isinstance(dist, CategoricalDistribution) or not isinstance(value, (int, float)):
        return math.nan
    lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
    x = float(value)
    if getattr(dist, "log", False):
        if lo <= 0 or x <= 0:
            return math.nan
        lo, hi, x = math.log(lo), math.log(hi), math.log(x)
    return (x - lo) / (hi - lo) if hi > lo else 0.0


class Evidence:
    """The evidence of one study in one storage, read incrementally (module docstring).

    Args:
        storage: The study's storage (held weakly: a new storage object starts a new cache).
        study_id: The study's id in it.
        space: The knob distributions used for the unit box (the sampler's ``search_space``);
            a knob missing there uses the first distribution a trial declared for it.
    """

    def __init__(self, *, storage: Any, study_id: int,
                 space: Mapping[str, BaseDistribution] | None) -> None:
        self._storage_ref = weakref.ref(storage)
        self.study_id = study_id
        self._space = dict(space or {})
        self.next_number = 0  # every trial with a smaller number has been read once
        self.pending: dict[int, int] = {}  # number -> trial id of trials read while running
        self.n_finished = 0
        self._errors = _Errors()  # global factor: sorted ratios and interval error counts
        self._scale: float | None = None
        # local factor: unit-box knob coordinates per evidence row (NaN where a trial lacks
        # the knob); collapsed and stable rows apart (collapses are few)
        self._dists: dict[str, BaseDistribution] = {}
        self._names: list[str] = []
        self._rows = {True: _Rows(), False: _Rows()}
        self._lock = threading.RLock()  # Study.optimize(n_jobs=...) samples from threads

    def matches(self, storage: Any) -> bool:
        return self._storage_ref() is storage

    # ----------------------------------------------------------------------- reading
    def refresh(self, study: Study) -> None:
        """Read the trials that finished or appeared since the last refresh."""
        with self._lock:
            self._refresh(study)

    def _refresh(self, study: Study) -> None:
        storage = study._storage
        if self.next_number == 0 and not self.pending:
            self._bulk(study)
            return
        for number, trial_id in list(self.pending.items()):
            t = storage.get_trial(trial_id)
            if t.state.is_finished():
                del self.pending[number]
                self._take(t)
        for _ in range(_MAX_INCREMENTAL):
            try:
                trial_id = storage.get_trial_id_from_study_id_trial_number(
                    self.study_id, self.next_number)
            except KeyError:
                return
            self._see(storage.get_trial(trial_id))
        self._bulk(study)  # a large backlog (another worker was busy): one bulk read

    def _bulk(self, study: Study) -> None:
        for t in study._storage.get_all_trials(self.study_id, deepcopy=False):
            if t.number >= self.next_number:
                self._see(t)

    def _see(self, t: FrozenTrial) -> None:
        """A trial read for the first time."""
        self.next_number = max(self.next_number, t.number + 1)
        if t.state.is_finished():
            self._take(t)
        else:
            self.pending[t.number] = t._trial_id

    def _take(self, t: FrozenTrial) -> None:
        """A finished trial: store its evidence (if any)."""
        self.n_finished += 1
        ev = trial_evidence(t)
        if ev is None:
            return
        ratio, collapsed = ev
        self._errors.insert(ratio, collapsed)
        self._scale = None
        coords = {}
        for name, value in t.params.items():
            if name == LR:
                continue
            dist = self._space.get(name) or self._dists.setdefault(name, t.distributions[name])
            c = unit_coordinate(dist, value)
            if math.isfinite(c):
                coords[name] = c
                if name not in self._names:
                    self._names.append(name)
        self._rows[collapsed].insert(ratio, [coords.get(k, math.nan) for k in self._names])

    # ----------------------------------------------------------------------- factors
    def scale(self) -> float:
        """The global edge factor (cached until new evidence arrives)."""
        with self._lock:
            if self._scale is None:
                self._scale = self._errors.factor(1.0)
            return self._scale

    @property
    def n_collapsed(self) -> int:
        return self._rows[True].n

    def coordinates(self, knobs: Mapping[str, Any]) -> np.ndarray:
        """Unit-box coordinates of ``knobs`` in this evidence's knob order (NaN: unknown)."""
        out = np.full(len(self._names), math.nan)
        for j, name in enumerate(self._names):
            dist = self._space.get(name) or self._dists.get(name)
            if name in knobs and dist is not None:
                out[j] = unit_coordinate(dist, knobs[name])
        return out

    def local_scale(self, knobs: Mapping[str, Any], radius: float, margin: float = 0.0
                    ) -> float | None:
        """The local edge factor at ``knobs`` (module docstring); None without a collapse
        within ``radius``. ``margin``: the sampler's log safety margin (the factor is at most
        ``e^margin`` times the highest nearby stable ratio, so the cap never exceeds it)."""
        with self._lock:
            return self._local_scale(knobs, radius, margin)

    def _local_scale(self, knobs: Mapping[str, Any], radius: float, margin: float
                     ) -> float | None:
        bad = self._rows[True]
        if bad.n == 0:
            return None
        x = self.coordinates(knobs)
        near = np.flatnonzero(bad.distance(x) <= radius)
        if near.size == 0:
            return None
        # the factor grows with r_c (below() never falls), so the lowest nearby collapse sets
        # it (rows are sorted by ratio)
        r_c = float(bad.r[near[0]])
        below = self._rows[False].highest_near(x, radius, below=r_c)
        if below is None:
            return r_c / 2.0
        return max(r_c / 2.0, min(math.sqrt(r_c * below), below * math.exp(margin)))

    def near_collapse(self, knobs: Sequence[Mapping[str, Any]], radius: float) -> np.ndarray:
        """The lowest ratio of a collapse within ``radius`` of each of ``knobs`` (inf where
        none is near), vectorised: the local factor is below it, so it screens many candidates
        at once."""
        with self._lock:
            return self._near_collapse(knobs, radius)

    def _near_collapse(self, knobs: Sequence[Mapping[str, Any]], radius: float) -> np.ndarray:
        out = np.full(len(knobs), math.inf)
        bad = self._rows[True]
        if bad.n == 0 or not knobs:
            return out
        x = np.full((len(knobs), len(self._names)), math.nan)
        for j, name in enumerate(self._names):
            dist = self._space.get(name) or self._dists.get(name)
            if dist is not None:
                x[:, j] = [unit_coordinate(dist, k[name]) if name in k else math.nan
                           for k in knobs]
        d = bad.c[None, :, :] - x[:, None, :bad.c.shape[1]]
        d[np.isnan(d)] = 0.0
        near = np.einsum("ijk,ijk->ij", d, d) <= radius * radius  # (candidates, collapses)
        return np.where(near, bad.r[None, :], math.inf).min(axis=1)


class _Errors:
    """Sorted ratios and the error count of every interval between them (`_factor`), updated
    in place per new trial (an O(n) memory move, no re-sort and no re-count)."""

    def __init__(self) -> None:
        self.n = 0
        self._r = np.empty(16)
        self._err = np.zeros(17, dtype=np.int64)

    def insert(self, ratio: float, collapsed: bool) -> None:
        n = self.n
        if n + 1 >= self._r.size:
            self._r = np.concatenate([self._r, np.empty(self._r.size)])
            self._err = np.concatenate([self._err, np.zeros(self._r.size - n, np.int64)])
        i = int(np.searchsorted(self._r[:n], ratio, side="right"))
        self._r[i + 1:n + 1] = self._r[i:n]
        self._r[i] = ratio
        # interval i = [cand[i], old r[i]) splits at the new ratio into i and i + 1
        self._err[i + 2:n + 2] = self._err[i + 1:n + 1]
        self._err[i + 1] = self._err[i]
        if collapsed:  # an error wherever s >= ratio
            self._err[i + 1:n + 2] += 1
        else:  # an error wherever s < ratio
            self._err[:i + 1] += 1
        self.n = n + 1

    def factor(self, prior: float) -> float:
        return _factor(self._r[:self.n], self._err[:self.n + 1], prior)


class _Rows:
    """Evidence rows (ratio, unit-box coordinates), kept sorted by ratio in growing buffers. A
    knob first seen after some rows adds a NaN column (unknown: it does not count in
    distances)."""

    _CHUNK = 256  # rows per step of the backward scan in `highest_near`

    def __init__(self) -> None:
        self.n = 0
        self._r = np.empty(16)
        self._c = np.full((16, 0), math.nan)

    @property
    def r(self) -> np.ndarray:
        return self._r[:self.n]

    @property
    def c(self) -> np.ndarray:
        return self._c[:self.n]

    def insert(self, ratio: float, coords: list[float]) -> None:
        n = self.n
        if len(coords) > self._c.shape[1]:
            pad = np.full((self._c.shape[0], len(coords) - self._c.shape[1]), math.nan)
            self._c = np.concatenate([self._c, pad], axis=1)
        if n == self._r.size:
            self._r = np.concatenate([self._r, np.empty(n)])
            self._c = np.concatenate([self._c, np.full(self._c.shape, math.nan)])
        i = int(np.searchsorted(self._r[:n], ratio, side="right"))
        self._r[i + 1:n + 1] = self._r[i:n]
        self._c[i + 1:n + 1] = self._c[i:n]
        self._r[i] = ratio
        self._c[i] = math.nan
        self._c[i, :len(coords)] = coords
        self.n = n + 1

    def distance(self, x: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        c = self.c[rows]
        return _distance(c, x[:c.shape[1]])

    def highest_near(self, x: np.ndarray, radius: float, *, below: float) -> float | None:
        """The highest ratio < ``below`` among rows within ``radius`` of ``x`` (None: none);
        scans backwards from ``below`` in chunks, so a near row is usually found at once."""
        end = int(np.searchsorted(self.r, below, side="left"))
        while end > 0:
            start = max(0, end - self._CHUNK)
            hit = np.flatnonzero(self.distance(x, slice(start, end)) <= radius)
            if hit.size:
                return float(self._r[start + hit[-1]])
            end = start
        return None


def _distance(coords: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Euclidean distance over the knobs both sides know (NaN-aware)."""
    if coords.shape[0] == 0:
        return np.empty(0)
    d = coords - x[None, :]
    d[np.isnan(d)] = 0.0
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def trial_evidence(t: FrozenTrial) -> tuple[float, bool] | None:
    """(lr / model edge, collapsed) of a finished trial, or None without evidence: a trial
    counts when it collapsed (``advisor.instability.trial_collapsed``) or completed."""
    ua = t.user_attrs
    top, lr = ua.get("advisor:lr_max_model"), t.params.get(LR)
    if not (isinstance(top, (int, float)) and isinstance(lr, (int, float))
            and top > 0 and lr > 0):
        return None
    collapsed = trial_collapsed(ua)
    if collapsed or t.state == TrialState.COMPLETE:
        return float(lr) / float(top), collapsed
    return None

"""`StableRegionSampler`: any Optuna sampler, restricted to the predicted-stable region.

Design (see ``docs/architecture.md`` and ``trl-optuna-notes.md`` section 1.2). Per-trial bounds
such as ``suggest_float("learning_rate", lo, eta_max(knobs))`` would drop ``learning_rate`` from
Optuna's intersection search space, and rejection loops stall GP and CMA-ES. So the learning
rate is reparametrised: the base sampler proposes the other knobs and a stability coordinate
``u = "advisor:lr_fraction"`` in the FIXED box [0, 1], and the sampler maps it into the user's
declared range below the stable bound,

.. math::
    \\eta = \\eta_{lo} (\\eta_{up} / \\eta_{lo})^{u}, \\qquad
    \\eta_{up} = \\min(\\eta_{hi},\\; s\\, \\eta_{max}(\\text{knobs})\\, e^{-m}, \\ldots)

(linear instead of geometric for a non-log distribution), where ``eta_max`` is the model's
edge, ``s`` the online edge factor and ``m`` the safety margin; the chance constraint and the
damping-ratio floor can lower ``eta_up`` further. The objective keeps calling
``trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)`` and receives the constrained
value, so ``trial.params`` holds the real learning rate and ``GRPOConfig(**to_grpo_kwargs(
trial.params))`` works. The base sampler never sees ``learning_rate``: it is handed a view of the
study in which every trial's ``learning_rate`` is replaced by its ``advisor:lr_fraction`` user
attribute, so TPE, GP and CMA-ES learn on the fixed box.

Online update: the edge factors are recomputed at every trial from the finished trials in
the storage (user attributes and parameters only, so it works across workers and restarts; a
cache in ``advisor._sampler_evidence`` reads each finished trial once, so the cost per trial
does not grow with the study). Each trial's evidence is its ratio
``r = learning_rate / advisor:lr_max_model`` and whether it collapsed (``advisor:collapsed``
set by the objective, or ``advisor:prune_reason == "collapse"`` set by
`advisor.TrajectoryPruner`). The global factor ``s`` minimises the number of misclassified
trials (stable above the edge plus collapsed below it) and, among minimisers, stays closest to
the model (``s = 1``): it rises only with stable runs above the model's edge. The local factor
(``local_radius``) answers a collapse that the global count outvotes: a collapse at ``r_c``
caps every knob combination within ``local_radius`` of it (unit box of the numeric knobs) at
``max(r_c / 2, min(sqrt(r_c b), b e^m))`` times its edge, ``b`` the highest stable ratio below
``r_c`` nearby (``r_c / 2`` without one), from the next trial of any worker on; the cap
``e^-m`` times that never exceeds ``max(b, r_c e^-m / 2)``, so trials at the cap cannot creep
it up towards the collapse. Neither factor falls below half the collapse's ratio because of a
stable run far below it (the global one did before: one collapse at 0.25 and one stable run at
0.01 set ``s = 0.05``, a study of the TRL benchmark's ablation (iv-b) lost its region that way).

Why (bandit benchmark, development seeds 11 and 5, 2 x 800 plugin trials before the local
factor): the 32 collapsed trials were none of them guided, all had ``s = 1`` (the online update
had never moved), all sat at 0.7-1.0 of the stability coordinate (at the chance-constrained cap,
P(stable) 0.980-0.999) and 24 of 32 at ``steps_per_generation = 2`` (10.8% of those trials
collapsed, 0.9% at 1 and 1.0% at 3): the model's edge is too high there, a region the
global factor cannot see because stable runs elsewhere outvote the collapses.

Guided start: an advisor that knows the edge should not open with blind exploration. The first
``n_guided_trials`` trials (default 1) run the predicted-fastest stable configuration: the knob
combination and learning rate, under the cap (margin, chance constraint, damping floor, online
edge factor), with the highest predicted relaxation rate ``1 / advisor:time_constant``. They are
recorded with their stability coordinate, so the base sampler learns from them.

Optuna's samplers write trial attributes through ``study._storage`` (TPE and CMA-ES do the
same); this module does so for the ``advisor:`` user attributes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import warnings
import weakref
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.samplers import BaseSampler
from optuna.samplers import BruteForceSampler
from optuna.samplers import GridSampler
from optuna.samplers import PartialFixedSampler
from optuna.samplers import TPESampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import TrialState
from scipy.special import ndtr
from scipy.special import ndtri

from advisor._sampler_evidence import Evidence
from advisor._sampler_evidence import edge_factor_sorted
from advisor._sampler_rates import _column_of
from advisor._sampler_rates import _crossing
from advisor._sampler_rates import _declared_fraction
from advisor._sampler_rates import _fastest
from advisor._sampler_rates import _floor
from advisor._sampler_rates import _fraction_of
from advisor._sampler_rates import _loglog
from advisor._sampler_rates import _map_fraction
from advisor._sampler_rates import _on_grid
from advisor._sampler_rates import _probit
from advisor._sampler_rates import _Table
from advisor._sampler_space import LR
from advisor._sampler_space import _check_knob_names
from advisor._sampler_space import _check_search_space
from advisor._sampler_space import _discrete_values
from advisor._sampler_space import _distance
from advisor._sampler_space import _draw
from advisor._sampler_space import _guide_grid
from advisor._sampler_space import _is_knob
from advisor._sampler_space import _json
from advisor._sampler_space import _plain
from advisor._sampler_space import _rate_range
from advisor._sampler_space import _unit
from advisor._sampler_view import _View
from advisor._validation import check_int
from advisor._validation import check_interval
from advisor.exceptions import AdvisorWarning


if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial


__all__ = ["StableRegionSampler", "edge_factor"]

FRACTION_KEY = "advisor:lr_fraction"
_FRACTION_DIST = FloatDistribution(0.0, 1.0)
_ZERO_DECADES = 1e-6  # a linear learning-rate range from 0 is modelled from 1e-6 x its top
_MISSING = object()  # a knob absent from one of two parameter sets
_PER_DECADE = 24  # grid points per decade of learning rate (1.1x apart); the model's cost is
# per knob combination, not per row, so a fine grid is nearly free


def edge_factor(ratios: Sequence[float], collapsed: Sequence[bool], *,
                prior: float = 1.0) -> float:
    """Edge factor ``s`` that best separates stable from collapsed trials.

    ``ratios[i]`` is trial i's learning rate over the model's edge. The error count is
    ``#{stable, r > s} + #{collapsed, r <= s}``; among the minimisers the value closest to
    ``prior`` (log scale) is returned: ``prior`` itself when the evidence agrees with it, the
    highest stable ratio when stable runs lie above it, and the geometric midpoint between the
    highest stable ratio below a collapse and that collapse (half the collapse ratio when no
    stable run lies below) when the edge must come down.

    Args:
        ratios: Positive learning-rate ratios, one per finished trial with evidence.
        collapsed: Whether each trial collapsed or diverged.
        prior: The model's factor (1 = trust the model).

    Returns:
        The edge factor (> 0).

    Example:
        >>> edge_factor([0.2, 0.5, 0.7], [False, False, True])  # collapse at 0.7 < 1
        0.5916079783099616
        >>> edge_factor([0.5, 1.5], [False, False])  # stable run above the edge raises it
        1.5
    """
    r = np.asarray(ratios, dtype=float)
    y = np.asarray(collapsed, dtype=bool)
    order = np.argsort(r, kind="stable")
    return edge_factor_sorted(r[order], y[order], prior)






class StableRegionSampler(BaseSampler):
    """Sample GRPO hyperparameters only inside the predicted-stable region.

    Wraps any Optuna sampler and forwards every hook to it. The base sampler proposes every
    parameter except ``learning_rate``, plus a stability coordinate in [0, 1]; the sampler turns
    that coordinate into a learning rate inside the objective's declared range and below the
    stable bound of the proposed knobs (module docstring). Knob combinations with no stable
    learning rate in range are moved to the nearest stable candidate of a vectorised draw (no
    rejection loop). Each trial records its prediction as ``advisor:`` user attributes
    (``margin``, ``p_stable``, ``regime``, ``damping_ratio``, ``time_constant``, ``plateau``,
    ``lr_max_model``, ``lr_upper``, ``edge_scale``, ``local_scale``, ``lr_fraction``,
    ``in_region``).

    How it meets Optuna's features:

    * The rate is placed for the knobs the trial holds when ``learning_rate`` is suggested
      (the relative sample's values for knobs not suggested yet): a knob outside the relative
      space (``momentum`` only under ``optim="sgd"``) or fixed by a wrapper
      (``PartialFixedSampler``) bounds it as well. Knobs suggested after it, or missing from
      ``search_space``, cannot: the trial's attributes are recorded again for the values it
      ran with and an `AdvisorWarning` says so (suggest ``learning_rate`` last).
    * ``GridSampler`` / ``BruteForceSampler`` as the base enumerate the other knobs; every
      combination runs at its predicted-fastest stable rate (as a guided trial), and the study
      stops when they are exhausted. A grid that holds ``learning_rate`` is an error.
    * Enqueued or fixed rates run as given (``advisor:in_region`` tells whether they are
      inside). An int or categorical ``learning_rate`` is not reparametrised: the base learns
      on it, and a value above the cap moves to the largest value of the distribution under
      it. A linear range may start at 0.
    * Multi-objective studies, ask-and-tell, ``n_jobs`` threads, RDB storages, pickling
      (caches are rebuilt from the storage) and one sampler for several studies are supported.

    Args:
        model: A `advisor.stability.StabilityModel` (anything with ``assess(params)`` returning a
            Verdict; ``assess_many`` and ``estimate.plateau`` are used when present).
        base_sampler: The sampler that learns; default ``TPESampler(seed=seed)``.
        seed: Seed of the default base sampler and of the repair draws.
        search_space: The knob distributions, keyed by GRPOConfig field names (plus
            ``momentum``); must contain ``learning_rate``. Recommended: with it every knob is
            sampled jointly from the first trial. Without it, the space is inferred from the
            finished trials, and until then ``learning_rate`` is sampled independently from the
            knobs the objective suggested before it (suggest ``learning_rate`` last).
        defaults: Values of knobs that are not searched (e.g. ``per_device_train_batch_size``).
        safety_margin: Log-margin ``m >= 0`` below the edge: ``eta <= s eta_max e^{-m}``.
        min_damping_ratio: Floor on the predicted damping ratio zeta (e.g. 1.0 = no overshoot).
        alpha: Chance constraint: P(stable) >= 1 - alpha, alpha in (0, 1), from the model's
            uncertainty about the edge; None turns it off (the margin alone). alpha bounds each
            trial's collapse probability, and a sweep that learns where the fast configurations
            are puts many trials at the cap, so the share of collapsed trials approaches alpha,
            or exceeds it where the model is overconfident. The default 0.01 is half of the 2%
            of trials a sweep can afford to lose: near the cap the model's P(collapse) was
            about 2x too low on the bandit benchmark's development seeds (0.75-1.8% predicted,
            3-4.6% observed), and with 0.02 two of five seeds lost 2.4% of trials.
        online_update: Recompute the edge factor from the finished trials (module docstring).
        max_time_constant: Skip learning rates too small to matter: the lowest sampled rate is
            the one whose predicted time constant is this many optimizer steps (None: the
            declared lower bound). Never raises the rate above the stable cap.
        edge_bias: During the base sampler's start-up (it proposes nothing), draw the stability
            coordinate from Beta(edge_bias, 1) instead of uniform: the fastest stable rates sit
            just below the edge. 1 = uniform.
        n_candidates: Size of the vectorised draw used to repair unstable knob combinations.
        n_guided_trials: The first ``n_guided_trials`` trials (by trial number) skip the base
            sampler and run the predicted-fastest stable configuration: over a grid of the
            other knobs (every categorical choice, up to ``_GUIDE_LEVELS`` levels per numeric
            knob, at most ``_GUIDE_MAX`` combinations) and the learning rates up to each
            combination's cap (margin, chance constraint, damping floor and online edge
            factor included), the one with the highest predicted relaxation rate
            ``1 / time_constant``; guided trial k runs the k-th fastest combination. They are
            marked ``advisor:guided``. An advisor that knows the edge should not spend its first
            trials exploring blindly; the base sampler then learns from them. 0 turns it off.
        local_radius: Radius (Euclidean, in the unit box of the numeric knobs, log-scaled for
            log distributions; categorical knobs are ignored) within which a collapsed trial
            lowers the cap of other knob combinations (module docstring); recorded as
            ``advisor:local_scale``. None turns the local factor off; it needs
            ``online_update``.

    Example:
        >>> import optuna
        >>> from types import SimpleNamespace
        >>> class Edge:  # stand-in for StabilityModel: eta_max = 0.1 (1 - momentum)
        ...     def assess(self, p):
        ...         top = 0.1 * (1 - p.get("momentum", 0.0))
        ...         sure = 0.999 if p["learning_rate"] < 0.5 * top else 0.5
        ...         return SimpleNamespace(max_learning_rate=top, probability=sure,
        ...             margin=math.log(top / p["learning_rate"]), regime="monotone",
        ...             damping_ratio=1.0, time_constant=10.0)
        >>> sampler = StableRegionSampler(model=Edge(), seed=0)
        >>> def objective(trial):
        ...     mu = trial.suggest_float("momentum", 0.0, 0.9)
        ...     lr = trial.suggest_float("learning_rate", 1e-5, 1.0, log=True)
        ...     return lr
        >>> study = optuna.create_study(sampler=sampler, direction="maximize")
        >>> study.optimize(objective, n_trials=5)
        >>> all(t.params["learning_rate"] <= 0.1 * (1 - t.params["momentum"])
        ...     and t.user_attrs["advisor:in_region"] for t in study.trials)
        True
    """

    def __init__(
        self,
        *,
        model: Any,
        base_sampler: BaseSampler | None = None,
        seed: int | None = None,
        search_space: Mapping[str, BaseDistribution] | None = None,
        defaults: Mapping[str, Any] | None = None,
        safety_margin: float = 0.1,
        min_damping_ratio: float | None = None,
        alpha: float | None = 0.01,
        online_update: bool = True,
        max_time_constant: float | None = None,
        edge_bias: float = 1.0,
        n_candidates: int = 128,
        n_guided_trials: int = 1,
        local_radius: float | None = 0.25,
    ) -> None:
        if not callable(getattr(model, "assess", None)):
            raise TypeError(f"`model` must have an assess(params) method (a StabilityModel), "
                            f"got {type(model).__name__}.")
        if base_sampler is not None and not isinstance(base_sampler, BaseSampler):
            raise TypeError(f"`base_sampler` must be an optuna BaseSampler, got "
                            f"{type(base_sampler).__name__}.")
        self._model = model
        self._base = base_sampler if base_sampler is not None else TPESampler(seed=seed)
        self._margin = check_interval("safety_margin", safety_margin, low=0.0,
                                      hint="It is a log-margin: 0.1 keeps eta 10% below the edge.")
        self._zeta_min = (None if min_damping_ratio is None else
                          check_interval("min_damping_ratio", min_damping_ratio, low=0.0))
        self._alpha = (None if alpha is None else check_interval(
            "alpha", alpha, low=0.0, high=1.0, low_closed=False, high_closed=False,
            hint="It is the allowed probability of instability, e.g. 0.05."))
        self._online = bool(online_update)
        self._radius = (None if local_radius is None else check_interval(
            "local_radius", local_radius, low=0.0,
            hint="It is a distance in the unit box of the numeric knobs, e.g. 0.25."))
        self._n_candidates = check_int("n_candidates", n_candidates, low=1)
        self._n_guided = check_int("n_guided_trials", n_guided_trials, low=0)
        self._edge_bias = check_interval("edge_bias", edge_bias, low=1.0)
        self._tau_max = (None if max_time_constant is None else check_interval(
            "max_time_constant", max_time_constant, low=0.0, low_closed=False,
            hint="It is in optimizer steps, e.g. a third of the run."))
        self._defaults = dict(defaults or {})
        self._space = None if search_space is None else dict(search_space)
        _check_knob_names("defaults", self._defaults)
        if self._space is not None:
            _check_search_space(self._space, self._defaults)
        # GridSampler / BruteForceSampler enumerate the knobs; the learning rate is placed here
        self._enumerating = isinstance(self._base, (GridSampler, BruteForceSampler))
        grid = getattr(self._base, "_search_space", None) if isinstance(
            self._base, GridSampler) else None
        if isinstance(grid, Mapping) and LR in grid:
            raise ValueError(
                f"`base_sampler` must not be a GridSampler whose grid holds 'learning_rate', got "
                f"learning_rate values {list(grid[LR])!r}. StableRegionSampler places the "
                "learning rate inside the stable region for every grid point of the other knobs: "
                "remove 'learning_rate' from the grid (or run GridSampler alone to evaluate "
                "exactly those rates, stable or not).")
        self._rng = np.random.default_rng(seed)
        self._warned: set[str] = set()
        self._new_caches()

    def _new_caches(self) -> None:
        """Caches per storage object (held weakly: a new storage, even at a recycled id, or
        another study in it never sees another's entries). The storage is the truth: they are
        dropped on pickling and rebuilt on use."""
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary[Any, dict[int, FrozenTrial]] = \
            weakref.WeakKeyDictionary()
        self._intersection: weakref.WeakKeyDictionary[
            Any, dict[int, IntersectionSearchSpace]] = weakref.WeakKeyDictionary()
        self._evidence: weakref.WeakKeyDictionary[Any, dict[int, Evidence]] = \
            weakref.WeakKeyDictionary()
        self._base_keys: dict[int, frozenset[str]] = {}  # trial id -> the base's own space
        self._placed: dict[int, dict[str, Any]] = {}  # trial id -> knobs its rate was set for
        self._deferred: dict[int, _Deferred] = {}  # trial id -> the relative placement of its rate
        self._last_u: dict[int, float] = {}  # trial id -> its recorded stability coordinate

    def __getstate__(self) -> dict[str, Any]:
        # Optuna users pickle samplers (and studies holding them): caches, locks and weak
        # references stay behind; a loaded sampler rebuilds them from the storage
        skip = {"_lock", "_cache", "_intersection", "_evidence", "_base_keys", "_placed",
                "_deferred", "_last_u"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._new_caches()

    def _per_storage(self, caches: weakref.WeakKeyDictionary[Any, dict[int, Any]],
                     storage: Any) -> dict[int, Any] | None:
        """``caches``'s dict for ``storage`` (None if it cannot be weakly referenced)."""
        try:
            with self._lock:
                found = caches.get(storage)
                if found is None:
                    found = caches[storage] = {}
                return found
        except TypeError:  # not hashable or no weak references: no cache
            return None

    # ---------------------------------------------------------------- hooks forwarded to the base
    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng = np.random.default_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(_View(study, self), trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        # the trial as the user sees it (a base's constraints_func reads trial.params), except
        # for an enumerating base, which files it in its grid of the knobs
        seen = self._rewrite(None, trial) if self._enumerating else trial
        self._base.after_trial(_View(study, self), seen, state, values)
        with self._lock:
            self._base_keys.pop(trial._trial_id, None)
            self._deferred.pop(trial._trial_id, None)
            self._last_u.pop(trial._trial_id, None)
            placed = self._placed.pop(trial._trial_id, None)
        if LR not in trial.params:
            if state == TrialState.COMPLETE:  # a trial that failed early is no evidence
                self._warn_once("no-lr", f"Trial {trial.number} has no `learning_rate` "
                                "parameter, so StableRegionSampler acted as its base sampler. "
                                "Suggest `learning_rate` in the objective to sample inside the "
                                "stable region.")
            return
        try:
            knobs = self._knobs(trial.params)
            late = [] if placed is None else sorted(
                k for k in set(knobs) | set(placed) if knobs.get(k, _MISSING) !=
                placed.get(k, _MISSING))
            if late:
                self._warn_once("late-knobs", f"{late} of trial {trial.number} were not known "
                                "when its learning rate was placed (suggested after "
                                "`learning_rate`, or missing from `search_space`), so its bound "
                                "used their defaults and the rate may lie outside the stable "
                                "region; its advisor: attributes are recorded again for the "
                                "values it ran with. Suggest `learning_rate` last and list every "
                                "searched knob in `search_space` (not warned again).")
            if late or "advisor:lr_max_model" not in trial.user_attrs:  # enqueued, fixed, late
                dist = _rate_range(trial.distributions[LR], trial.params[LR])
                if dist is not None:
                    table = self._table(study, knobs, dist)
                    self._record(study, trial, table, float(trial.params[LR]), None)
        except Exception as exc:  # never raise over one trial's data
            self._warn_once(f"record:{exc}", f"could not record the prediction of trial "
                            f"{trial.number} ({exc}); not warned again for this reason.")

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._enumerating:  # GridSampler / BruteForceSampler sample independently
            return {}
        space = dict(self._base.infer_relative_search_space(_View(study, self), trial))
        with self._lock:
            self._base_keys[trial._trial_id] = frozenset(space)
        space.pop(FRACTION_KEY, None)
        if self._space is not None:
            space.update(self._space)
        else:
            per = self._per_storage(self._intersection, study._storage)
            isp = None if per is None else per.get(study._study_id)
            if isp is None:
                isp = IntersectionSearchSpace(include_pruned=True)
                if per is not None:
                    per[study._study_id] = isp
            inferred = isp.calculate(study)
            space.update({k: d for k, d in inferred.items() if _is_knob(k)})
        return space

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        view = _View(study, self)
        lr_dist = search_space.get(LR)
        constrained = isinstance(lr_dist, FloatDistribution) and not lr_dist.single()
        with self._lock:
            keys = self._base_keys.pop(trial._trial_id, None)
        if keys is None:  # called without infer_relative_search_space (conformance tests)
            keys = frozenset(self._base.infer_relative_search_space(view, trial))
        # the base samples jointly only what it inferred itself (GPSampler and CmaEsSampler
        # read every parameter of their space from every completed trial, so a knob that some
        # trials lack, e.g. momentum only under optim="sgd", must not be forced on them); the
        # rest of the space is drawn from its independent sampler, as Optuna would at suggest time
        base_space = {k: d for k, d in search_space.items()
                      if k in keys and not (constrained and k == LR)}
        if constrained and FRACTION_KEY in keys:
            base_space[FRACTION_KEY] = _FRACTION_DIST
        params = dict(self._base.sample_relative(view, trial, base_space))
        # start-up phase: the base returned nothing; fill with its own independent draws (what
        # Optuna would do at suggest time), so the map below sees every knob
        startup = FRACTION_KEY not in params
        wanted = {k: d for k, d in search_space.items() if not (constrained and k == LR)}
        if constrained:
            wanted[FRACTION_KEY] = _FRACTION_DIST
        for name, dist in wanted.items():
            if name not in params:
                params[name] = self._base.sample_independent(view, trial, name, dist)
        if not constrained:
            if LR in params and isinstance(lr_dist, (IntDistribution, CategoricalDistribution)):
                params[LR] = self._discrete_rate(study, trial, lr_dist, params[LR], params)
            return params
        assert isinstance(lr_dist, FloatDistribution)
        u = float(params.pop(FRACTION_KEY))
        # values fixed by enqueue_trial win over any proposal: place the rate for them
        fixed = {k: v for k, v in (trial.system_attrs.get("fixed_params") or {}).items()
                 if k in search_space}
        if isinstance(self._base, PartialFixedSampler):  # its fixed values win as well
            held = getattr(self._base, "_fixed_params", None) or {}
            fixed.update({k: v for k, v in held.items() if k in search_space and k not in fixed})
        params.update({k: v for k, v in fixed.items() if k != LR})
        if trial.number < self._n_guided and not fixed:
            try:
                return self._defer(trial, self._guide(study, trial, params, search_space,
                                                      lr_dist), lr_dist)
            except Exception as exc:  # never raise over one trial's data
                self._warn(f"could not pick the predicted-fastest configuration for trial "
                           f"{trial.number} ({exc}); the base sampler's proposal is used.")
        if startup and self._edge_bias > 1.0:  # Beta(a, 1) by inversion of the base's draw
            u = u ** (1.0 / self._edge_bias)
        try:
            params = self._place(study, trial, params, search_space, lr_dist, u,
                                 fixed=fixed)
        except Exception as exc:  # never raise over one trial's data
            self._warn_model_failure(trial.number, exc)
            params[LR] = self._base.sample_independent(view, trial, LR, lr_dist)
            return params
        return self._defer(trial, params, lr_dist)

    def _defer(self, trial: FrozenTrial, params: dict[str, Any],
               lr_dist: FloatDistribution) -> dict[str, Any]:
        """Hold the placed rate back from the relative sample: it is handed out when the
        objective suggests ``learning_rate``, and placed again if the knobs the trial then
        holds differ from those it was placed for (a knob outside the relative space, e.g.
        ``momentum`` only under ``optim="sgd"``, or one a wrapper such as
        ``PartialFixedSampler`` fixes)."""
        with self._lock:
            self._deferred[trial._trial_id] = _Deferred(
                params=dict(params), knobs=self._knobs(params), lr=float(params[LR]),
                dist=lr_dist, u=float(self._last_u.pop(trial._trial_id, math.nan)))
        return {k: v for k, v in params.items() if k != LR}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        view = _View(study, self)
        if param_name != LR:
            # an enumerating base walks its grid over the knobs only (the view drops the rate)
            seen = self._rewrite(None, trial) if self._enumerating else trial
            return self._base.sample_independent(view, seen, param_name, param_distribution)
        if not isinstance(param_distribution, FloatDistribution):
            value = self._base.sample_independent(view, trial, param_name, param_distribution)
            return self._discrete_rate(study, trial, param_distribution, value, trial.params)
        dist = param_distribution
        with self._lock:
            held = self._deferred.pop(trial._trial_id, None)
        if held is not None:
            return self._deferred_rate(study, trial, dist, held)
        # GridSampler / BruteForceSampler cannot propose the coordinate: the rate of each
        # enumerated knob combination is its predicted-fastest stable rate (as a guided trial)
        fastest = self._enumerating or trial.number < self._n_guided
        u = None if self._enumerating else float(
            self._base.sample_independent(view, trial, FRACTION_KEY, _FRACTION_DIST))
        try:
            knobs = self._knobs(trial.params)
            missing = sorted(k for k in (self._space or {}) if k != LR and k not in knobs)
            if missing:
                self._warn(f"{missing} not suggested before `learning_rate` in trial "
                           f"{trial.number}; the bound uses their defaults. Suggest "
                           "`learning_rate` last or pass `search_space=`.")
            table = self._table(study, knobs, dist)
            stable = table.upper >= dist.low
            if not stable:
                self._warn(f"no stable learning rate in range for trial {trial.number}; "
                           "using the lowest one. Pass `search_space=` so the sampler can "
                           "move the other knobs too.")
            if fastest and stable:
                lr = _on_grid(_fastest(table, dist)[1], dist)
                u = _fraction_of(lr, dist, table.upper, table.lower)
                if not self._enumerating:
                    study._storage.set_trial_user_attr(trial._trial_id, "advisor:guided", True)
            else:
                u = 0.0 if u is None else u
                lr = _map_fraction(u, dist, max(table.upper, dist.low), table.lower)
            self._record(study, trial, table, lr, u)
            with self._lock:
                self._placed[trial._trial_id] = knobs
            return lr
        except Exception as exc:
            self._warn_model_failure(trial.number, exc)
            if self._enumerating:  # the base cannot propose a rate: uniform in the range
                return _map_fraction(float(self._rng.random()), dist, dist.high)
            return self._base.sample_independent(view, trial, param_name, dist)

    def _deferred_rate(self, study: Study, trial: FrozenTrial, dist: FloatDistribution,
                       held: _Deferred) -> float:
        """The rate placed in `sample_relative`, or, if the trial's knobs (suggested ones, the
        relative sample for the rest) differ from those it was placed for, the same stability
        coordinate placed again for them (see `_defer`)."""
        knobs = self._knobs({**held.params, **trial.params})
        if knobs == held.knobs and dist._contains(dist.to_internal_repr(held.lr)):
            return held.lr
        try:
            table = self._table(study, knobs, dist)
            if table.upper < dist.low:
                self._warn(f"no stable learning rate in range for the knobs of trial "
                           f"{trial.number}; using the lowest one.")
            u = held.u if 0.0 <= held.u <= 1.0 else 0.0
            lr = _map_fraction(u, dist, max(table.upper, dist.low), table.lower)
            self._record(study, trial, table, lr, u)
            with self._lock:
                self._placed[trial._trial_id] = knobs
            return lr
        except Exception as exc:  # never raise over one trial's data
            self._warn_model_failure(trial.number, exc)
            return float(min(max(held.lr, dist.low), dist.high))

    def _discrete_rate(self, study: Study, trial: FrozenTrial, dist: BaseDistribution,
                       value: Any, params: Mapping[str, Any]) -> Any:
        """An int or categorical learning rate (not reparametrised: the base learns on it): the
        base's value if it is under the cap, else the largest value of the distribution that
        is (recorded, like any trial's, in the ``advisor:`` attributes)."""
        try:
            rng = _rate_range(dist, value)
            if rng is None:
                self._warn_once("rate-values", f"`learning_rate` must take numbers >= 0 to be "
                                f"kept inside the stable region, got {dist}; it is not "
                                "constrained (not warned again). Use trial.suggest_float("
                                "'learning_rate', low, high, log=True).")
                return value
            knobs = self._knobs(params)
            table = self._table(study, knobs, rng)
            cap = table.upper * (1 + 1e-9)
            if float(value) > cap:
                values = _discrete_values(dist, cap)
                below = [v for v in values if float(v) <= cap]
                if below:
                    value = max(below, key=float)
                else:
                    self._warn(f"no stable learning rate among the values of {dist} for trial "
                               f"{trial.number}; the lowest one runs and is marked "
                               "advisor:in_region=False.")
                    value = min(values, key=float)
            self._record(study, trial, table, float(value), None)
            with self._lock:
                self._placed[trial._trial_id] = knobs
        except Exception as exc:  # never raise over one trial's data
            self._warn_model_failure(trial.number, exc)
        return value

    # ------------------------------------------------------------------------------- internals
    def _place(self, study: Study, trial: FrozenTrial, params: dict[str, Any],
               space: Mapping[str, BaseDistribution], lr_dist: FloatDistribution,
               u: float, *, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ev = self._refresh(study)
        table = self._table(study, self._knobs(params), lr_dist, ev=ev)
        if fixed and LR in fixed:  # enqueued rate: record its prediction, as after_trial does
            self._record(study, trial, table, float(fixed[LR]), None)
            params[LR] = float(fixed[LR])
            with self._lock:
                self._placed[trial._trial_id] = self._knobs(params)
            return params
        if table.upper < lr_dist.low and not fixed:
            params = self._repair(params, space, lr_dist, trial.number, table.scale, ev)
            table = self._table(study, self._knobs(params), lr_dist, ev=ev)
        # max(): nothing stable was found (warned in _repair); the lowest rate is used
        lr = _map_fraction(u, lr_dist, max(table.upper, lr_dist.low), table.lower)
        self._record(study, trial, table, lr, u)
        params[LR] = lr
        with self._lock:
            self._placed[trial._trial_id] = self._knobs(params)
        return params

    def predicted_fastest(self, study: Study, search_space: Mapping[str, BaseDistribution],
                          rank: int = 0) -> dict[str, Any]:
        """The stable configuration with the highest predicted relaxation rate.

        Scans the knob grid described under ``n_guided_trials`` and, per combination, the
        learning rates from the declared low up to its cap; the rate is ``1 / time_constant``
        of the model (interpolated log-log, as in the recorded attributes).

        Args:
            study: The study (its finished trials set the online edge factor).
            search_space: Knob distributions including ``learning_rate``.
            rank: 0 for the fastest combination, k for the (k+1)-th fastest.

        Returns:
            The parameters (knobs and ``learning_rate``).

        Raises:
            ValueError: No combination has a stable learning rate in range.

        Example:
            >>> import optuna
            >>> from optuna.distributions import FloatDistribution as F
            >>> from types import SimpleNamespace
            >>> class Edge:  # eta_max = 0.1 (1 - mu); tau = 1 / (10 lr)
            ...     def assess(self, p):
            ...         mu, lr = p.get("momentum", 0.0), p["learning_rate"]
            ...         return SimpleNamespace(max_learning_rate=0.1 * (1 - mu),
            ...             probability=0.9, regime="monotone", damping_ratio=1.0,
            ...             time_constant=1 / (10 * lr))
            >>> space = {"momentum": F(0.0, 0.9), "learning_rate": F(1e-4, 1.0, log=True)}
            >>> sampler = StableRegionSampler(model=Edge(), search_space=space,
            ...                               safety_margin=0.0, alpha=None)
            >>> best = sampler.predicted_fastest(optuna.create_study(), space)
            >>> best["momentum"], round(best["learning_rate"], 6)  # rate 100 (1 - mu) at the cap
            (0.0, 0.1)
        """
        lr_dist = search_space[LR]
        if not isinstance(lr_dist, FloatDistribution):
            raise ValueError(f"`search_space['learning_rate']` must be a FloatDistribution, "
                             f"got {lr_dist!r}.")
        names = [k for k in search_space if k != LR and _is_knob(k)]
        ranked: list[tuple[float, float, int, dict[str, Any], float]] = []
        ev = self._refresh(study)
        failure: Exception | None = None
        # the model's own defaults are the conditions it was measured at (a pilot's group size,
        # adam_beta1, ...): where it predicts the same rate, the guide stays nearest to them
        reference = getattr(self._model, "defaults", None)
        reference = dict(reference) if isinstance(reference, Mapping) else {}
        space = {k: search_space[k] for k in names}
        for i, combo in enumerate(_guide_grid(space, reference)):
            try:  # a combination the model rejects (e.g. optim="adamw" for an SGD model)
                table = self._table(study, self._knobs(combo), lr_dist, ev=ev)
            except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                failure = exc
                continue
            if table.upper < lr_dist.low:
                continue
            rate, lr = _fastest(table, lr_dist)
            if math.isfinite(rate) and rate > 0:
                # equal rates (to 1e-6) are a tie that the distance to the reference breaks
                ranked.append((-round(math.log(rate), 6), _distance(combo, reference, space), i,
                               combo, _on_grid(lr, lr_dist)))
        if not ranked:
            why = f" (the model failed: {failure})" if failure is not None else ""
            raise ValueError("`search_space` must hold a knob combination with a stable "
                             f"learning rate in range, got none on the guide grid{why}. Lower "
                             "`safety_margin`, raise `alpha` or lower the learning-rate bound.")
        ranked.sort(key=lambda r: (r[0], r[1], r[2]))
        *_, combo, lr = ranked[min(rank, len(ranked) - 1)]
        return {**combo, LR: lr}

    def _guide(self, study: Study, trial: FrozenTrial, params: dict[str, Any],
               space: Mapping[str, BaseDistribution], lr_dist: FloatDistribution
               ) -> dict[str, Any]:
        """Guided trial: the predicted-fastest stable configuration (``n_guided_trials``)."""
        best = self.predicted_fastest(study, space, rank=trial.number)
        out = {**params, **best}
        table = self._table(study, self._knobs(out), lr_dist)
        u = _fraction_of(best[LR], lr_dist, table.upper, table.lower)
        self._record(study, trial, table, best[LR], u)
        study._storage.set_trial_user_attr(trial._trial_id, "advisor:guided", True)
        with self._lock:
            self._placed[trial._trial_id] = self._knobs(out)
        return out

    def _knobs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        knobs = dict(self._defaults)
        knobs.update({k: v for k, v in params.items() if _is_knob(k) and k != LR})
        optim = knobs.get("optim")
        if optim is not None and str(getattr(optim, "value", optim)) != "sgd":
            # a conditional space (momentum only under optim="sgd"): the relative sample
            # carries momentum for every trial, but an AdamW trial never uses it
            knobs.pop("momentum", None)
        return knobs

    def _query(self, knobs: Mapping[str, Any], lrs: np.ndarray, *,
               extra: Mapping[str, Sequence[Any]] | None = None,
               details: bool = False) -> dict[str, np.ndarray]:
        """Model outputs for rows (knobs + extra[i], lrs[i]); one vectorised call if it can."""
        n = len(lrs)
        many = getattr(self._model, "assess_many", None)
        if callable(many):
            cols: dict[str, Any] = {k: _column_of(v, n) for k, v in knobs.items()}
            cols.update({k: np.asarray(v) for k, v in (extra or {}).items()})
            cols[LR] = np.asarray(lrs, dtype=float)
            out = many(cols, details=True) if details else many(cols)
            return {k: np.asarray(v) for k, v in out.items()}
        rows = [self._model.assess({**knobs, **{k: v[i] for k, v in (extra or {}).items()},
                                    LR: float(lrs[i])}) for i in range(n)]
        keys = ("max_learning_rate", "probability", "damping_ratio", "time_constant", "regime")
        return {k: np.array([getattr(r, k, np.nan) for r in rows], dtype=object
                            if k == "regime" else float) for k in keys}

    def _table(self, study: Study, knobs: Mapping[str, Any], lr_dist: FloatDistribution,
               *, ev: Evidence | None = None) -> _Table:
        """One model call: the edge and, on a log grid of the declared range, P(stable) (at
        lr / s, the model's frame), damping ratio, time constant and regime; then the cap
        (global edge factor s, local factor of the knobs' neighbourhood, margin, chance
        constraint, damping floor). ``ev``: evidence already refreshed for this trial."""
        if ev is None:
            ev = self._refresh(study)
        s = 1.0 if ev is None else ev.scale()
        local = None if ev is None or self._radius is None else \
            ev.local_scale(knobs, self._radius, self._margin)
        lo, hi = lr_dist.low, lr_dist.high
        if not hi > 0:
            raise ValueError(f"the learning-rate range must hold positive rates, got {lr_dist}")
        g_lo = lo if lo > 0 else hi * _ZERO_DECADES  # a linear range from 0: a log grid below
        vectorised = callable(getattr(self._model, "assess_many", None))
        per_decade = _PER_DECADE if vectorised else 2  # a loop over assess() is slow
        n = max(3, int(math.ceil(per_decade * math.log10(hi / g_lo))) + 1)
        grid = np.geomspace(g_lo, hi, n)
        out = self._query(knobs, np.concatenate([grid / s, grid]), details=True)
        top = float(out["max_learning_rate"][0])
        if not (math.isfinite(top) and top > 0):  # min() below would silently drop a NaN
            raise ValueError(f"the model's max_learning_rate is {top!r}")
        prob = np.asarray(out["probability"][:n], dtype=float)
        zeta = np.asarray(out["damping_ratio"][n:], dtype=float)
        upper = min(hi, s * top * math.exp(-self._margin))
        if local is not None:
            upper = min(upper, local * top * math.exp(-self._margin))
        if self._alpha is not None:
            upper = min(upper, _crossing(grid, _probit(prob) - ndtri(1.0 - self._alpha)))
        if self._zeta_min is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                upper = min(upper, _crossing(grid, np.log(zeta) - math.log(self._zeta_min)))
        tau = np.asarray(out["time_constant"][n:], dtype=float)
        lower = lo
        if self._tau_max is not None:
            lower = _floor(grid, tau, self._tau_max, upper)
        return _Table(top=top, scale=s, local=local, upper=upper, lower=lower, grid=grid,
                      probability=prob, zeta=zeta, time_constant=tau,
                      regime=np.asarray(out["regime"][n:], dtype=object))

    def _refresh(self, study: Study) -> Evidence | None:
        """The study's online evidence, brought up to date (None if ``online_update`` is off).

        Only trials that were running or did not exist at the last refresh are read (finished
        trials never change), so the result is what a fresh sampler (another worker, a restart)
        computes from the same storage, at a cost that does not grow with the study.
        """
        if not self._online:
            return None
        per = self._per_storage(self._evidence, study._storage)
        ev = None if per is None else per.get(study._study_id)
        if ev is None or not ev.matches(study._storage):
            ev = Evidence(storage=study._storage, study_id=study._study_id, space=self._space)
            if per is not None:
                per[study._study_id] = ev
        ev.refresh(study)
        return ev

    def _rewrite(self, storage: Any, t: FrozenTrial) -> FrozenTrial:
        if LR not in t.params:
            return t
        if not (self._enumerating or isinstance(t.distributions.get(LR), FloatDistribution)):
            return t  # an int or categorical rate is not reparametrised: the base learns on it
        cache = None if storage is None else self._per_storage(self._cache, storage)
        found = None if cache is None else cache.get(t._trial_id)
        if found is not None:
            return found
        u = t.user_attrs.get(FRACTION_KEY)
        params = {k: v for k, v in t.params.items() if k != LR}
        dists = {k: v for k, v in t.distributions.items() if k != LR}
        if self._enumerating:  # the grid holds the knobs only; the rate is placed here
            u = -1.0
        elif not (isinstance(u, (int, float)) and 0.0 <= u <= 1.0):
            # no recorded coordinate (the model failed, or the rate was enqueued/fixed): its
            # place in the declared range, so every trial with a rate has the coordinate
            # (samplers such as GPSampler read it from every completed trial)
            u = _declared_fraction(t.params[LR], t.distributions.get(LR))
        if u is not None and 0.0 <= u <= 1.0:
            params[FRACTION_KEY], dists[FRACTION_KEY] = float(u), _FRACTION_DIST
        new = copy.copy(t)
        new.params, new.distributions = params, dists
        if cache is not None and t.state.is_finished():
            cache[t._trial_id] = new
        return new

    def _repair(self, params: dict[str, Any], space: Mapping[str, BaseDistribution],
                lr_dist: FloatDistribution, number: int, scale: float,
                ev: Evidence | None = None) -> dict[str, Any]:
        """Nearest knob combination (normalised box distance) with a stable rate in range."""
        names = [k for k in space if k != LR and _is_knob(k)]
        n = self._n_candidates
        cand = {k: _draw(space[k], self._rng, n) for k in names}
        fixed = self._knobs({k: v for k, v in params.items() if k not in names})
        out = self._query(fixed, np.full(n, lr_dist.low / scale), extra=cand)
        tops = np.asarray(out["max_learning_rate"], dtype=float)
        shrink = math.exp(-self._margin)
        ok = scale * tops * shrink >= lr_dist.low
        if self._alpha is not None:  # the chance constraint must hold at the lowest rate too
            ok &= np.asarray(out["probability"], dtype=float) >= 1.0 - self._alpha
        local = self._radius is not None and ev is not None and ev.n_collapsed > 0
        rows = [{**fixed, **{k: cand[k][i] for k in names}} for i in range(n)]
        lowest = np.full(n, math.inf)
        if local:  # a nearby collapse at r_c caps below r_c: a cheap screen for all candidates
            assert ev is not None and self._radius is not None
            lowest = ev.near_collapse(rows, self._radius)
            ok &= lowest * tops * shrink >= lr_dist.low
        dist = sum((_unit(space[k], cand[k]) - _unit(space[k], [params[k]])[0]) ** 2
                   for k in names)
        for i in np.argsort(np.where(ok, dist, np.inf), kind="stable")[:int(ok.sum())]:
            if np.isfinite(lowest[i]):  # the exact local factor, nearest candidates first
                assert ev is not None and self._radius is not None
                loc = ev.local_scale(rows[i], self._radius, self._margin)
                if loc is not None and loc * tops[i] * shrink < lr_dist.low:
                    continue
            return {**params, **{k: _plain(cand[k][i]) for k in names}}
        self._warn(f"no stable knob combination found for trial {number} "
                   f"among {n} candidates; it runs at the lowest learning rate and is "
                   "marked advisor:in_region=False.")
        return params

    def _record(self, study: Study, trial: FrozenTrial, table: _Table, lr: float,
                u: float | None) -> None:
        """Store the prediction at ``lr`` (interpolated on the table's grid: probit-linear for
        P(stable), log-log for damping ratio and time constant, regime of the grid point at or
        below ``lr``) as ``advisor:`` user attributes."""
        x, lg = math.log(max(lr, float(table.grid[0]))), np.log(table.grid)
        i = int(np.clip(np.searchsorted(table.grid, lr, side="right") - 1, 0, lg.size - 1))
        regime = table.regime[i]
        attrs = {
            "advisor:learning_rate": lr, "advisor:lr_max_model": table.top,
            "advisor:edge_scale": table.scale, "advisor:local_scale": table.local,
            "advisor:lr_upper": table.upper,
            "advisor:margin": math.log(min(table.scale, table.local or math.inf)
                                       * table.top / lr) if lr > 0 else math.inf,
            "advisor:p_stable": float(ndtr(np.interp(x, lg, _probit(table.probability)))),
            "advisor:damping_ratio": _loglog(x, lg, table.zeta),
            "advisor:time_constant": _loglog(x, lg, table.time_constant),
            "advisor:regime": str(getattr(regime, "value", regime)),
            "advisor:plateau": getattr(getattr(self._model, "estimate", None), "plateau", None),
            "advisor:in_region": bool(lr <= table.upper * (1 + 1e-9)),
        }
        if u is not None:
            attrs[FRACTION_KEY] = u
            with self._lock:
                self._last_u[trial._trial_id] = u
        for key, value in attrs.items():
            study._storage.set_trial_user_attr(trial._trial_id, key, _json(value))

    def _warn_model_failure(self, number: int, exc: Exception) -> None:
        self._warn_once(f"model:{exc}", f"the stability model failed on trial {number} ({exc}); "
                        "learning_rate falls back to the base sampler and is not constrained "
                        "(not warned again for this reason).")

    def _warn(self, msg: str) -> None:
        warnings.warn(f"StableRegionSampler: {msg}", AdvisorWarning, stacklevel=3)

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(msg)


# ----------------------------------------------------------------------------------- helpers






@dataclasses.dataclass(frozen=True)
class _Deferred:
    """A rate placed in `sample_relative`, handed out when ``learning_rate`` is suggested."""

    params: dict[str, Any]  # the relative sample it was placed with (knobs and rate)
    knobs: dict[str, Any]  # the knobs the model saw
    lr: float
    dist: FloatDistribution
    u: float  # its stability coordinate (NaN if none was recorded)









































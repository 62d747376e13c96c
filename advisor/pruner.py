"""`TrajectoryPruner`: prune GRPO trials from the closed-form fit of their reward curve.

Two rules, checked at every report (``trial.report(reward, step)``):

1. **Collapse** (at once, no warm-up): the shared instability rule
   (`advisor.instability.InstabilityDetector`) on the reported rewards plus the health signals the
   objective stored in the user attribute ``"advisor:health"`` (columns of TRL log keys, e.g.
   ``{"step": [...], "grad_norm": [...], "entropy": [...], "kl": [...]}``). A non-finite reward
   counts as divergence.
2. **Trajectory** (after ``n_warmup_steps``): fit the closed-form trajectory
   (`advisor.dynamics.fit_trajectory`; the exact heavy-ball map when the trial's SGD momentum is
   known and >= 0.3) and predict the statistic at the horizon with a ``interval`` prediction
   band; prune when even the optimistic end of the band is worse than the reference: the best
   completed trial, or the ``percentile`` of the completed trials. Given the pilot's
   ``stiffness``, the fit also knows roughly what rate the trial should relax at (lr K / (1 - mu))
   and takes it as a log-normal rate prior (``advisor:rate_prior`` on a pruned trial).

The decision depends only on ``(study, trial)`` and the constructor settings, so it works with
RDB storage and many workers. The reason is stored on the trial (``advisor:prune_reason`` is
``"collapse"`` or ``"trajectory"``), which `advisor.StableRegionSampler` reads for its online
edge update. Bad data in one trial never raises: the pruner warns and does not prune.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

import numpy as np
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import TrialState

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.exceptions import AdvisorError
from advisor.exceptions import AdvisorWarning
from advisor.exceptions import InsufficientDataError


if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from advisor.dynamics import TrajectoryFit


__all__ = ["TrajectoryPruner"]

Statistic = Literal["final", "mean"]
_TIE = 1e-6  # relative: a best case this close to the reference is a tie (never pruned)
_N_DRAWS = 500  # parameter draws for the band: quantile error ~1% of its width, 0.2 ms per step
# from here the known-momentum heavy-ball model predicts better than the exponential: median
# error of the final reward from a 25% prefix 0.036 vs 0.039 at mu = 0.3, equal at mu = 0.1,
# 0.038 vs 0.20 at mu = 0.9 (60 curves each, 100 samples per step; benchmarks/fit_quality.py)
_KNOWN_MOMENTUM = 0.3
_FITS_PER_DOUBLING = 64
_EXACT_REPORTS = 64  # statistic="mean": future reports the band is evaluated at one by one
_GAUSS_NODES = 32  # beyond: Gauss-Legendre nodes (predict() costs 0.4 ms at 16 points, 0.6 at 64)
_INERTIAL_MOMENTUM = 0.5  # fallback: from here the heavy-ball start is S-shaped (theory.md s. 6)
# default model scatter s_model of the rate prior: SD of log(rate of a run / (lr K / (1 - mu)))
# over the stable on-policy real TRL GRPO runs (real-trl/stiffness.csv: rate with p* pinned at
# the common plateau, K the log least-squares fit of rate (1 - mu) proportional to lr per
# (optimizer, mu) cell). SGD: 25 runs, 0.23 (24 runs within +-0.14, one near-edge run at
# lr 0.0204 1.0 below); AdamW: 42 runs, 0.58 (K per unit lr saturates above lr 2e-4)
_MODEL_SCATTER = {"sgd": 0.23, "adamw": 0.58}


class TrajectoryPruner(BasePruner):
    """Prune trials whose predicted reward cannot beat the reference, and collapsed trials.

    Args:
        n_warmup_steps: The step (as given to ``trial.report``, like Optuna's
            ``MedianPruner``; not a number of reports) before which the trajectory rule never
            prunes (the collapse rule applies from the first report). The fit needs a few
            points beyond the rise.
        n_startup_trials: Completed trials needed before the trajectory rule may prune.
        interval_steps: Fit at every this many reports after the warm-up (a fit costs ~4 ms
            at 100 points and grows with the curve; beyond 64 x ``interval_steps`` reports the
            gap grows to 1/64 of the reports so far, so a 5,000-step trial costs ~1 ms per report
            on average; the collapse rule still runs at every report).
        percentile: ``None`` compares with the best completed trial; ``p`` in (0, 100) with the
            ``p``-th percentile from the top of the completed trials (keeps the top p%).
        interval: Central probability of the prediction band, in (0, 1).
        n_steps: Horizon (last step) of a full trial; ``None`` = the last step of the
            reference trial.
        statistic: ``"final"``: reward at the horizon; ``"mean"``: mean reward over steps up to
            the horizon (use it when the objective is the mean reward of the run).
        models: Trajectory models passed to `advisor.dynamics.fit_trajectory`. ``None``: the
            exact heavy-ball map at the trial's known momentum when the trial runs heavy-ball
            SGD with ``momentum`` >= 0.3 (``trial.params["momentum"]``, or ``optim="sgd"``
            with ``optim_args="momentum=..."``; Adam's ``adam_beta1`` is an EMA, not heavy-ball
            momentum), else the exponential. The slow inertial start of heavy ball makes an
            exponential-only band too narrow (``benchmarks/fit_quality.py``: 16-64% coverage
            of a nominal 90% band at mu = 0.9). If the heavy-ball fit fails, the exponential
            and the oscillator are tried instead.
        detect_collapse: Apply the collapse rule.
        defaults: Knobs the study does not search, in GRPOConfig names plus ``momentum``
            (the ``defaults`` given to `advisor.StableRegionSampler`), e.g.
            ``{"momentum": 0.9}`` when every trial runs heavy-ball SGD at a fixed momentum: the
            trial's parameters take precedence. Used to read the trial's heavy-ball momentum
            (and, with ``stiffness``, its learning rate and optimizer).
        stiffness: The pilot's stiffness: the `advisor.StiffnessEstimate` that
            `advisor.estimate_stiffness` returns, the `advisor.StabilityModel` built on it
            (its ``.estimate`` is used), or any object with ``.stiffness`` (K per unit lr) and
            ``.std_error`` (and optionally ``.optimizer``, ``"sgd"`` or ``"adamw"``). Each fit
            then takes a log-normal rate prior (`advisor.dynamics.fit_trajectory`'s
            ``rate_prior``) centred at the trial's dimensionless rate x = lr K / (1 - mu)
            (``learning_rate`` and the heavy-ball momentum from the trial's params or
            ``defaults``; mu = 0 for AdamW) with log sd sqrt((std_error / K)^2 +
            model_scatter^2). The prior sharpens both the predicted reward and its band where
            the trial's curve does not yet pin its rate (from a 25% prefix of slow-start
            heavy-ball curves at 100 samples per step: median error of the final reward
            0.056 / 0.054 -> 0.041 / 0.033 on two seeds, band half as wide, 90% band covering
            the truth in 0.97 / 0.98; benchmarks/results/fit_quality.md, session 5). The band
            is honest only if the scatter is: a centre off by twice the stated log sd covers
            0.88 there, four times 0.65.
            A trial the prior cannot be set for (no or non-numeric ``learning_rate``, an
            optimizer other than the pilot's, a non-heavy-ball momentum value, configured
            two-rate ``models``) is fitted without it, with one warning per cause.
        model_scatter: Log standard deviation of a run's rate about lr K / (1 - mu) beyond
            the stiffness's own error. ``None``: the scatter measured on 67 stable on-policy
            real TRL GRPO runs (`real-trl/stiffness.csv`), 0.23 for SGD and 0.58 for AdamW
            (whose K per unit lr saturates above lr ~2e-4).

    Minimised studies: the collapse rule reads the negated values (a loss that blows up is a
    collapse) and the trajectory rule uses the lower end of the band against the best (lowest)
    value. Multi-objective studies are never pruned (Optuna does not support ``Trial.report``
    there). A best case within 1e-6 (relative) of the reference is a tie and never prunes.
    Note that the reference under ``statistic="final"`` is one noisy value (the best trial's
    last report) and the rule is applied at every fit, so with noisy rewards a trial as good
    as the best one is sometimes pruned (3-4 of 10 at noise 0.01-0.03 on a 400-step curve
    whose fits start at step 50): a later warm-up or ``statistic="mean"`` makes it rarer.

    Example:
        >>> import optuna
        >>> pruner = TrajectoryPruner(n_warmup_steps=10, n_steps=40)
        >>> study = optuna.create_study(direction="maximize", pruner=pruner)
        >>> good = {s: 0.9 - 0.6 * math.exp(-0.2 * s) for s in range(41)}
        >>> study.add_trial(optuna.create_trial(value=0.9, intermediate_values=good))
        >>> trial = study.ask()
        >>> for s in range(16):
        ...     trial.report(0.3 + 0.1 * (1 - math.exp(-0.3 * s)), s)
        >>> trial.should_prune()
        True
    """

    def __init__(
        self,
        *,
        n_warmup_steps: int = 10,
        n_startup_trials: int = 1,
        interval_steps: int = 5,
        percentile: float | None = None,
        interval: float = 0.9,
        n_steps: int | None = None,
        statistic: Statistic = "final",
        models: tuple[str, ...] | None = None,
        detect_collapse: bool = True,
        defaults: Mapping[str, Any] | None = None,
        stiffness: Any | None = None,
        model_scatter: float | None = None,
    ) -> None:
        self._n_warmup_steps = check_int("n_warmup_steps", n_warmup_steps, low=0)
        self._n_startup_trials = check_int("n_startup_trials", n_startup_trials, low=1)
        self._interval_steps = check_int("interval_steps", interval_steps, low=1)
        self._percentile = None if percentile is None else check_interval(
            "percentile", percentile, low=0.0, high=100.0, low_closed=False, high_closed=False)
        self._interval = check_interval("interval", interval, low=0.0, high=1.0,
                                        low_closed=False, high_closed=False)
        self._n_steps = None if n_steps is None else check_int("n_steps", n_steps, low=1)
        self._statistic = check_options("statistic", statistic, ("final", "mean"))
        if models is not None and (isinstance(models, str) or not models):
            raise ValueError(f"`models` must name at least one trajectory model, got {models!r}."
                             " Example: ('exponential',).")
        self._models = None if models is None else tuple(models)
        if self._models is not None:
            from advisor.dynamics import _ALL_MODELS

            for name in self._models:
                check_options("models", name, _ALL_MODELS)
        if not isinstance(detect_collapse, (bool, np.bool_)):
            raise TypeError(f"`detect_collapse` must be a bool, got "
                            f"{type(detect_collapse).__name__} {detect_collapse!r}.")
        self._detect_collapse = bool(detect_collapse)
        if defaults is not None and not isinstance(defaults, Mapping):
            raise TypeError(f"`defaults` must be a mapping of knob names to values, got "
                            f"{type(defaults).__name__}. Example: {{'momentum': 0.9}}.")
        self._defaults = dict(defaults or {})
        self._stiffness = _check_stiffness(stiffness)
        if model_scatter is not None:
            model_scatter = check_interval("model_scatter", model_scatter, low=0.0,
                                           hint="It is a log standard deviation, e.g. 0.23.")
        elif self._stiffness is not None:
            model_scatter = _MODEL_SCATTER[self._stiffness[2] or "sgd"]
        self._model_scatter = model_scatter
        self._warned: set[str] = set()  # causes of a prior-free fit already warned about
        from advisor._pruner_replay import ReplayCache

        self._replay = ReplayCache()  # speed only: a miss replays the trial from its start

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if len(study.directions) > 1:  # Optuna's own Trial.report refuses these studies
            _warn("pruning a multi-objective study is not supported (Optuna does not support "
                  "Trial.report there); no trial will be pruned.")
            return False
        steps, rewards = _curve(trial.intermediate_values)
        maximize = study.direction == StudyDirection.MAXIMIZE
        if self._detect_collapse:
            # the rule reads rewards (higher is better): a minimised metric is negated
            reason = self._collapse_reason(study, trial, steps,
                                           rewards if maximize else -rewards,
                                           1 if maximize else -1)
            if reason is not None:
                _record(study, trial, {"advisor:prune_reason": "collapse",
                                       "advisor:collapsed": True,
                                       "advisor:collapse_rule": reason})
                return True
        if not np.isfinite(rewards).all():
            _warn(f"trial {trial.number} reported a non-finite value; it will not be pruned by "
                  "the trajectory rule (enable detect_collapse to prune divergence).")
            return False
        # every interval_steps-th REPORT after the warm-up, so sparse reports still get fits;
        # a long trial is refitted about _FITS_PER_DOUBLING times per doubling of its reports
        # (a fit is O(reports): every 5th report would cost ~25 ms per report at 5,000)
        n_after = int(steps.size - np.searchsorted(steps, self._n_warmup_steps))
        every = max(self._interval_steps, n_after // _FITS_PER_DOUBLING)
        if step < self._n_warmup_steps or (n_after - 1) % every:
            return False
        reference, horizon = self._reference(study, maximize)
        if reference is None or horizon is None or horizon <= step:
            return False
        optimistic, prior = self._optimistic(trial, steps, rewards, horizon, maximize)
        if optimistic is None:
            return False
        tol = _TIE * max(1.0, abs(reference))  # a tie (the best trial itself) never prunes
        worse = optimistic < reference - tol if maximize else optimistic > reference + tol
        if worse:
            attrs: dict[str, Any] = {"advisor:prune_reason": "trajectory",
                                     "advisor:predicted_best_case": optimistic,
                                     "advisor:reference": reference}
            if prior is not None:  # (x, log sd) the fit used
                attrs["advisor:rate_prior"] = list(prior)
            _record(study, trial, attrs)
        return bool(worse)

    # ------------------------------------------------------------------------------- internals
    def _prior(self, params: Mapping[str, Any]) -> tuple[float, float] | None:
        """``(x, log_sd)`` of the trial's rate prior, or None (warned once per cause)."""
        if self._stiffness is None:
            return None
        k, se, optimizer = self._stiffness
        if self._models is not None and any(m not in ("exponential", "heavy_ball")
                                            for m in self._models):
            self._warn_once("models", f"the stiffness prior applies to one-rate models only, "
                            f"got models={self._models!r}; trials are fitted without it.")
            return None
        lr = params.get("learning_rate")
        if lr is None:
            self._warn_once("lr", "a trial has no 'learning_rate' (in its params or `defaults`),"
                            " so the stiffness cannot set its rate; such trials are fitted "
                            "without the prior.")
            return None
        if (isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.number))
                or not math.isfinite(float(lr)) or float(lr) <= 0):
            self._warn_once("lr", f"a trial's learning_rate is not a positive number (got "
                            f"{lr!r}); such trials are fitted without the stiffness prior.")
            return None
        family = _optimizer_family(params)
        if family is None or (optimizer is not None and family != optimizer):
            self._warn_once("optim", f"a trial runs optimizer {params.get('optim')!r} but the "
                            f"stiffness was measured with {optimizer or 'an unknown optimizer'}"
                            " (K has other units: the rate of SGD is lr K / (1 - mu), of AdamW"
                            " lr K with its own K); such trials are fitted without the prior.")
            return None
        mu = _heavy_ball_momentum(params) if family == "sgd" else 0.0
        if mu is None:
            self._warn_once("momentum", f"a trial's momentum is not a heavy-ball momentum in "
                            f"[0, 1) (got {params.get('momentum')!r}); such trials are fitted "
                            "without the stiffness prior.")
            return None
        model_scatter = self._model_scatter or 0.0
        return float(lr) * k / (1.0 - mu), math.sqrt((se / k) ** 2 + model_scatter**2)

    def _warn_once(self, cause: str, msg: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            _warn(msg)

    def _collapse_reason(self, study: Study, trial: FrozenTrial, steps: np.ndarray,
                         rewards: np.ndarray, sign: int) -> str | None:
        if not np.isfinite(rewards).all():
            return "nonfinite"
        health = trial.user_attrs.get("advisor:health")
        start = trial.user_attrs.get("advisor:start_reward")
        key = (id(study._storage), study._study_id, trial._trial_id, sign)
        try:
            return self._replay.reason(key, steps, rewards,
                                       health if isinstance(health, Mapping) else None,
                                       start if _finite(start) else None)
        except (AdvisorError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
            # ArithmeticError: e.g. rewards near 1e308 overflow the rule's window sums
            _warn(f"could not apply the instability rule to trial {trial.number} ({exc}); it "
                  "will not be pruned for collapse at this step.")
            return None

    def _reference(self, study: Study, maximize: bool) -> tuple[float | None, int | None]:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self._n_startup_trials:
            return None, None
        if self._percentile is None:
            # without the deep copy of best_trial: it copied every intermediate value of the
            # best trial at every fit (7 of 24 s over a 6,000-report trial)
            best_of = getattr(study, "_get_best_trial", None)
            try:
                best = best_of(deepcopy=False) if callable(best_of) else study.best_trial
            except ValueError:  # constrained study without a feasible completed trial
                return None, None
            if not best.intermediate_values:
                _warn("the best trial has no intermediate values, so TrajectoryPruner cannot "
                      "compare with it; no trial will be pruned by the trajectory rule.")
                return None, None
            horizon = self._n_steps if self._n_steps is not None else best.last_step
            return _statistic(best.intermediate_values, horizon, self._statistic), horizon
        horizon = self._n_steps if self._n_steps is not None else max(
            (t.last_step for t in completed if t.last_step is not None), default=None)
        if horizon is None:
            return None, None
        stats = np.array([_statistic(t.intermediate_values, horizon, self._statistic)
                          for t in completed if t.intermediate_values])
        stats = stats[np.isfinite(stats)]
        if stats.size < self._n_startup_trials:
            return None, None
        q = 100.0 - self._percentile if maximize else self._percentile
        return float(np.percentile(stats, q)), horizon

    def _optimistic(self, trial: FrozenTrial, steps: np.ndarray, rewards: np.ndarray,
                    horizon: int, maximize: bool
                    ) -> tuple[float | None, tuple[float, float] | None]:
        """The optimistic end of the band's statistic, and the rate prior the fit used."""
        observed = rewards[steps <= horizon]
        if self._statistic == "final":
            points, weights, n_future = np.array([float(horizon)]), np.ones(1), 0
        else:
            points, weights, n_future = _future_reports(steps, horizon)
            if n_future == 0:  # no report left before the horizon
                return float(observed.mean()), None
        params = {**self._defaults, **trial.params}
        prior = self._prior(params)
        try:
            if prior is not None:
                try:
                    fit = _fit(params, steps, rewards, self._models, prior)
                except (AdvisorError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    if not isinstance(exc, InsufficientDataError):  # too short: silent, as below
                        self._warn_once("fit", f"a fit with the stiffness prior failed ({exc}); "
                                        "such trials are fitted without it.")
                    prior = None
            if prior is None:
                fit = _fit(params, steps, rewards, self._models)
            _, low, high = fit.predict(points, interval=self._interval, n_samples=_N_DRAWS)
        except (AdvisorError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            if not isinstance(exc, AdvisorError):
                _warn(f"the trajectory fit of trial {trial.number} failed ({exc}); it will not "
                      "be pruned at this step.")
            return None, None
        band = np.asarray(high if maximize else low, dtype=float)
        if not np.isfinite(band).all():
            return None, None
        if self._statistic == "final":
            return float(band[-1]), prior
        future_sum = float(np.dot(weights, band)) * n_future
        return float((observed.sum() + future_sum) / (observed.size + n_future)), prior


def _future_reports(steps: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Where to evaluate the band for the mean of the reports still to come before
    ``horizon``, at the trial's mean report spacing: ``(points, weights, n)`` with ``n`` the
    number of future reports and ``weights`` (summing to 1) giving their mean from the band
    at ``points``. Up to ``_EXACT_REPORTS`` reports the points are the reports themselves;
    beyond, Gauss-Legendre nodes of the midpoint-rule integral with its end correction.
    Evenly spaced points from the next step to the horizon (the former rule) overweight the
    ends: on 0.9 - 0.5 exp(-t/80), 16 of them put the mean 0.004 too low, so a trial identical
    to the best one was pruned under ``statistic="mean"``.

    Example:
        >>> points, weights, n = _future_reports(np.array([0.0, 10.0, 20.0]), 60)
        >>> points.tolist(), weights.tolist(), n
        ([30.0, 40.0, 50.0, 60.0], [0.25, 0.25, 0.25, 0.25], 4)
    """
    last = float(steps[-1])
    h = (last - float(steps[0])) / (steps.size - 1) if steps.size > 1 else 1.0
    h = h if h > 0 else 1.0
    n = int(math.floor((horizon - last) / h + 1e-9))
    if n <= 0:
        return np.empty(0), np.empty(0), 0
    if n <= _EXACT_REPORTS:
        return last + h * np.arange(1, n + 1), np.full(n, 1.0 / n), n
    # sum_k f(x_k) = int_a^b f / h - h (f'(b) - f'(a)) / 24 + O(h^3) (midpoint rule), the
    # derivatives from the band one spacing inside each end
    x, w = np.polynomial.legendre.leggauss(_GAUSS_NODES)
    a, b = last + 0.5 * h, last + (n + 0.5) * h
    nodes = 0.5 * (a + b) + 0.5 * (b - a) * x
    weights = 0.5 * (b - a) * w / h
    ends = np.array([a, a + h, b - h, b])
    slope = np.array([1.0, -1.0, -1.0, 1.0]) / h * (-h / 24.0)  # -h/24 (f'(b) - f'(a))
    return np.concatenate([nodes, ends]), np.concatenate([weights, slope]) / n, n


def _curve(values: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
    steps = np.fromiter(values.keys(), dtype=float, count=len(values))
    rewards = np.fromiter(values.values(), dtype=float, count=len(values))
    if steps.size > 1 and not (np.diff(steps) > 0).all():  # reported out of order
        order = np.argsort(steps, kind="stable")
        steps, rewards = steps[order], rewards[order]
    return steps, rewards


def _statistic(values: Mapping[int, float], horizon: int, kind: str) -> float:
    last = max(values) if values else -1
    if 0 <= last <= horizon:  # fast path (every completed trial in a uniform study): O(1)/O(n)
        if kind == "final":
            return float(values[last])
        return float(np.fromiter(values.values(), dtype=float, count=len(values)).mean())
    steps, rewards = _curve(values)
    keep = steps <= horizon
    if not keep.any():
        return math.nan
    return float(rewards[keep][-1] if kind == "final" else rewards[keep].mean())


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _record(study: Study, trial: FrozenTrial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)


def _warn(msg: str) -> None:
    warnings.warn(f"TrajectoryPruner: {msg}", AdvisorWarning, stacklevel=3)


def _heavy_ball_momentum(params: Mapping[str, Any]) -> float | None:
    """The heavy-ball momentum mu of a trial's parameters, or None when it is not heavy ball.

    Read as `advisor.knobs` does: a ``momentum`` parameter (with ``optim`` absent or
    ``"sgd"``), or ``optim="sgd"`` with ``optim_args="momentum=..."`` (plain SGD: 0). AdamW
    (any other ``optim``) has no heavy-ball momentum: ``adam_beta1`` is an EMA. A value that is
    not a number in [0, 1) gives None (the caller falls back to the default models).
    """
    optim = params.get("optim")
    name = None if optim is None else str(getattr(optim, "value", optim))
    if name is not None and name != "sgd":
        return None
    value: Any = params.get("momentum")
    if value is None and name == "sgd":
        args = params.get("optim_args")
        pairs = [item.split("=", 1) for item in str(args or "").replace(" ", "").split(",")]
        value = dict(p for p in pairs if len(p) == 2).get("momentum", 0.0)
    try:
        mu = float(value)
    except (TypeError, ValueError):
        return None
    return mu if 0.0 <= mu < 1.0 and not isinstance(value, bool) else None


def _fit_kwargs(params: Mapping[str, Any], models: tuple[str, ...] | None
                ) -> list[dict[str, Any]]:
    """`fit_trajectory` arguments to try in order: as configured, or by the known momentum."""
    mu = _heavy_ball_momentum(params)
    if models is not None:  # as configured; an explicit heavy_ball needs the trial's momentum
        return [{"models": models, "momentum": mu} if "heavy_ball" in models else
                {"models": models}]
    inertial = mu is not None and mu >= _INERTIAL_MOMENTUM
    fallback = {"models": ("exponential", "oscillator") if inertial else ("exponential",)}
    if mu is not None and mu >= _KNOWN_MOMENTUM:
        return [{"models": ("heavy_ball",), "momentum": mu}, fallback]
    return [fallback]


def _check_stiffness(stiffness: Any) -> tuple[float, float, str | None] | None:
    """``(K, std_error, optimizer or None)`` of a stiffness estimate or a stability model."""
    if stiffness is None:
        return None
    est = stiffness
    if not hasattr(est, "std_error") and hasattr(est, "estimate"):  # a StabilityModel
        est = est.estimate
    if not (hasattr(est, "stiffness") and hasattr(est, "std_error")):
        raise TypeError(f"`stiffness` must be an advisor.StiffnessEstimate (from "
                        f"advisor.estimate_stiffness), an advisor.StabilityModel, or an object "
                        f"with .stiffness and .std_error, got {type(stiffness).__name__}.")
    k = check_interval("stiffness.stiffness", est.stiffness, low=0.0, low_closed=False,
                       hint="K is the pilot's relaxation rate per unit learning rate.")
    se = check_interval("stiffness.std_error", est.std_error, low=0.0,
                        hint="Re-run the pilot (estimate_stiffness) so that K has a finite "
                             "standard error.")
    optimizer = getattr(est, "optimizer", None)
    optimizer = None if optimizer is None else str(getattr(optimizer, "value", optimizer))
    if optimizer is not None and optimizer not in _MODEL_SCATTER:
        raise ValueError(f"`stiffness.optimizer` must be 'sgd' or 'adamw', got {optimizer!r}.")
    return k, se, optimizer


def _optimizer_family(params: Mapping[str, Any]) -> str | None:
    """``"sgd"`` or ``"adamw"`` as `advisor.knobs` reads it (no ``optim``: SGD when a
    ``momentum`` is given, else TRL's default AdamW); None for another optimizer."""
    optim = params.get("optim")
    if optim is None:
        return "sgd" if "momentum" in params else "adamw"
    name = str(getattr(optim, "value", optim))
    if name == "sgd":
        return "sgd"
    return "adamw" if "adamw" in name else None


def _fit(params: Mapping[str, Any], steps: np.ndarray, rewards: np.ndarray,
         models: tuple[str, ...] | None, rate_prior: tuple[float, float] | None = None
         ) -> TrajectoryFit:
    """The first trajectory fit that succeeds (the last attempt's failure propagates).

    With ``rate_prior`` (``(x, log_sd)``, x = lr K / (1 - mu)) every attempt whose models are
    all one-rate takes it, the exponential with the trial's momentum so that its centre is the
    slow root's rate; an attempt with a two-rate model (the inertial fallback) goes without.
    """
    from advisor import dynamics

    mu = _heavy_ball_momentum(params)
    *first, last = _fit_kwargs(params, models)
    if rate_prior is not None:
        for kwargs in (*first, last):
            if all(m in ("exponential", "heavy_ball") for m in kwargs["models"]):
                kwargs["rate_prior"] = rate_prior
                if kwargs.get("momentum") is None and mu:
                    kwargs["momentum"] = mu
    for kwargs in first:
        try:
            return dynamics.fit_trajectory(rewards, steps=steps, **kwargs)
        except (AdvisorError, ValueError, ArithmeticError, np.linalg.LinAlgError):
            pass  # the next attempt is the fallback
    return dynamics.fit_trajectory(rewards, steps=steps, **last)

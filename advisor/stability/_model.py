"""`StabilityModel`, the public face of the two layers, and its `Verdict`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt

from advisor._validation import check_int
from advisor.dynamics import Regime
from advisor.stability._conditions import _factorize
from advisor.stability._conditions import _integer_lag
from advisor.stability._conditions import condition_arrays
from advisor.stability._conditions import knob_arrays
from advisor.stability._layers import _ModelLayers
from advisor.stability._theory import FloatArray
from advisor.stability._theory import Scheme
from advisor.stability._theory import _is_stable_within
from advisor.stability._verdict import Verdict


Method = Literal["auto", "theory", "exact", "closed_form", "calibrated"]


def _as_params(params: Any) -> Any:
    """A pandas DataFrame (columns) or Series (one row) as a dict; anything else unchanged.

    Neither is a `Mapping`, yet both are the natural containers of knob configurations.
    """
    if isinstance(params, Mapping) or not (hasattr(params, "items") and hasattr(params, "keys")):
        return params
    return dict(params.items())


class StabilityModel(_ModelLayers):
    """Predict the largest stable learning rate of GRPO, and the regime below it.

    Two layers, and the verdict takes the tighter:

    * **theory**: the exact discrete linear test with the measured split (K_c, K_o) plus the
      on-policy bound ``eta K < 2(1 + mu)``; a known bandit ``problem`` (importance-ratio or
      logprob surrogate) replaces the linear bound by its simulated first divergence for every
      configuration (scanned up to 1.5x the asymptotic linear edge; with more than 2 arms,
      multi-mode, over the whole settling range); without the problem
      the bound is divided by ``safety`` where the linear test is known to over-predict
      (piecewise refresh, K_ref > 1, mu >= 0.5), and on-policy (K_ref = 1, sliding d = 0) by
      the measured momentum factor (`advisor.stability._nonlinear.momentum_factor`: 1 at
      mu = 0, 1.3 at 0.5-0.7, 1.44 at 0.8, 2.36 at 0.9, 2.7 at 0.95; the envelope of the linear
      test's over-prediction of 2-arm bandits, which reached 1.36x at mu = 0.9 on the reference
      and 1.95x on the hard prompt). The verdict's reason names the factor, and its log-sigma
      grows by half the factor's log;
    * **calibration**: a measured `EdgeEstimate` moved to the requested batch, refresh interval,
      reuse and heavy-ball momentum by its transfer law (absent without ``edge``).

    For real LMs the calibration layer decides (the measured edge is 10-50x below the theory
    bound, real-trl-findings.md section 4). On 2-arm bandits the linear test alone is within 5%
    outside the nonlinear regime on the reference problems, 5-10% over on some hard prompts
    (``benchmarks/prediction_accuracy.py``).

    Args:
        estimate: A `advisor.stiffness.StiffnessEstimate` (read: ``stiffness``,
            ``stiffness_current``, ``stiffness_sampler``, ``std_error``). Without the split the
            theory assumes a pure delay (K_c = 0) and warns.
        edge: Measured edge for the calibration layer, in units of this estimate's K.
        problem: The `advisor.bandit.BanditProblem` behind the estimate, if any: enables the
            simulated nonlinear check and fixes the surrogate (otherwise GRPO's ratio).
        nonlinear_check: Apply the nonlinear check (simulation or safety factor).
        batch_exponent: Overrides the edge's batch exponent ``a``.
        refresh_exponent: Overrides the edge's refresh exponent ``b``.
        safety: Divisor of the linear bound in the nonlinear regime without a problem (>= 1;
            2.5 covers the measured 1.4-2.4x over-prediction, bandit-findings.md section 9).
        optimizer: ``"sgd"`` or ``"adamw"``, the optimizer K was measured with (default: the
            estimate's or edge's ``optimizer`` attribute, else ``"sgd"``). K for AdamW is per
            unit lr with no ``1 - mu`` factor.
        simulation_steps: Steps of each simulated run in the nonlinear check.
        horizon_steps: Training length; if given, an oscillating mode that would not settle
            within it counts as unstable: its linear trajectory is classified by the horizon
            rule of the bandit ground truth (`critical_rate`). None: asymptotic stability.
        defaults: Fixed knob values used by `assess` when a key is absent (GRPOConfig names).
            An SGD model whose defaults name no optimizer reads a config without ``optim`` or
            ``momentum`` as plain SGD (not TRL's default AdamW).
        num_processes: Data-parallel processes, for the completions per step.

    Example:
        >>> from types import SimpleNamespace
        >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
        ...                       stiffness_sampler=-0.75, std_error=0.01)
        >>> model = StabilityModel(est)
        >>> round(float(model.max_learning_rate(momentum=0.8, refresh_interval=3,
        ...                                     refresh_scheme="sliding", method="exact")), 3)
        0.588
    """

    def max_learning_rate(
        self,
        *,
        momentum: Any = 0.0,
        refresh_interval: Any = 1,
        refresh_scheme: Scheme = "piecewise",
        optimizer: Literal["sgd", "adamw"] | None = None,
        samples_per_step: Any = None,
        num_iterations: Any = 1,
        method: Method = "auto",
    ) -> FloatArray:
        """Largest stable learning rate, vectorised over the condition arrays.

        Args:
            momentum: Heavy-ball mu in [0, 1) (must be 0 for AdamW).
            refresh_interval: K_ref >= 1 (piecewise) or sliding lag d >= 0, in optimizer steps.
            refresh_scheme: ``"piecewise"`` (TRL) or ``"sliding"`` (asynchronous lag).
            optimizer: Must equal the model's optimizer (None: the model's).
            samples_per_step: Completions per optimizer step (None: the edge's).
            num_iterations: Batch reuse (TRL ``num_iterations``), for the calibration layer.
            method: ``"auto"`` (tighter layer), ``"theory"`` (linear + nonlinear check),
                ``"exact"`` (linear test only), ``"calibrated"``, or ``"closed_form"``
                (the paper's line, for comparison only).

        Returns:
            Array broadcast over the inputs (0-d for scalars).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=0.0,
            ...                       stiffness_sampler=0.5, std_error=0.0)
            >>> round(float(StabilityModel(est).max_learning_rate(refresh_interval=8)), 4)
            0.5
        """
        self._check_optimizer(optimizer)
        shape, _, mu, lag, samples, n_it = condition_arrays(
            learning_rate=None, momentum=momentum, refresh_interval=refresh_interval,
            refresh_scheme=refresh_scheme, samples_per_step=samples_per_step,
            num_iterations=num_iterations, method=method, optimizer=self.optimizer)
        b = self._bounds(mu, lag, samples, n_it, refresh_scheme, method, exact=True)
        return np.minimum(b["eta_t"], b["eta_c"]).reshape(shape)

    def is_stable(
        self,
        learning_rate: Any,
        *,
        momentum: Any = 0.0,
        refresh_interval: Any = 1,
        refresh_scheme: Scheme = "piecewise",
        optimizer: Literal["sgd", "adamw"] | None = None,
        samples_per_step: Any = None,
        num_iterations: Any = 1,
        method: Method = "auto",
    ) -> npt.NDArray[np.bool_]:
        """Set-valued stability test at given learning rates (vectorised).

        Unlike ``learning_rate < max_learning_rate(...)`` this evaluates the exact linear test
        at each learning rate, so stable islands above the first edge (parametric resonance of
        lagged heavy ball) count as stable. Where a check sets the theory bound (simulation,
        safety factor) and for the calibration layer the bound is a threshold. `assess` stays
        conservative and calls islands unstable: they are fragile.

        Args:
            learning_rate: eta > 0, broadcast with the conditions.
            momentum, refresh_interval, refresh_scheme, optimizer, samples_per_step,
                num_iterations, method: As in `max_learning_rate`.

        Returns:
            Boolean array of the broadcast shape.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=0.0,
            ...                       stiffness_sampler=0.5, std_error=0.0)
            >>> StabilityModel(est).is_stable([0.9, 1.1], refresh_interval=4).tolist()
            [True, False]
        """
        self._check_optimizer(optimizer)
        shape, lr, mu, lag, samples, n_it = condition_arrays(
            learning_rate=learning_rate, momentum=momentum, refresh_interval=refresh_interval,
            refresh_scheme=refresh_scheme, samples_per_step=samples_per_step,
            num_iterations=num_iterations, method=method, optimizer=self.optimizer)
        b = self._bounds(mu, lag, samples, n_it, refresh_scheme, method, exact=True)
        # many configs: the Schur-Cohn sliding kernel (~30x faster than the eigenvalues)
        linear = _is_stable_within(lr * self._k, mu, np.full(mu.shape, self._rc), lag,
                                   refresh_scheme, self._horizon, fast=mu.size > 4096)
        theory = np.where(b["checked"], lr < b["eta_t"], linear)
        return np.asarray(theory & (lr < b["eta_c"])).reshape(shape)

    def __repr__(self) -> str:
        split = f"{self._rc:.4g}" if self._split_measured else "unmeasured (pure delay)"
        edge = "None" if self.edge is None else (
            f"x*={self.edge.rate:.4g} at B={self.edge.samples_per_step:g}")
        return (f"StabilityModel(K={self._k:.4g}, K_c/K={split}, optimizer={self.optimizer!r}, "
                f"edge={edge}, problem={'None' if self.problem is None else 'bandit'}, "
                f"horizon_steps={self._horizon})")

    def _knobs(self, params: Mapping[str, Any]) -> Any:
        """`advisor.knobs.Knobs` of one configuration (learning_rate required)."""
        from advisor.knobs import knobs_from_params

        params = _as_params(params)
        if isinstance(params, Mapping) and "learning_rate" not in params and \
                "learning_rate" not in (self._defaults or {}):
            raise ValueError("`params` must contain 'learning_rate' (or the model's defaults "
                             f"must), got keys {sorted(params)!r}. The verdict is about a "
                             "learning rate; TRL's default 1e-6 is not assumed.")
        knobs = knobs_from_params(params, defaults=self._defaults,
                                  num_processes=self._num_processes)
        self._check_optimizer(knobs.optimizer)
        return knobs

    def assess(self, params: Mapping[str, Any]) -> Verdict:
        """Stability verdict for one configuration given by GRPOConfig-named knobs.

        Args:
            params: ``learning_rate``, ``momentum`` (heavy ball) or ``optim``/``adam_beta1``,
                ``steps_per_generation``, ``num_iterations``, ``gradient_accumulation_steps``,
                ``num_generations``, ``per_device_train_batch_size`` (absent keys: the model's
                ``defaults``, then TRL's).

        Returns:
            The `Verdict` (TRL refreshes piecewise).

        Raises:
            ValueError: Knobs that TRL would reject, or an optimizer other than the model's.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
            ...                       stiffness_sampler=-0.75, std_error=0.02)
            >>> v = StabilityModel(est).assess({"learning_rate": 0.5, "momentum": 0.0})
            >>> v.stable, v.layer, v.regime.value
            (True, 'theory', 'monotone')
        """
        knobs = self._knobs(params)
        lr, mu = np.array([knobs.learning_rate]), np.array([knobs.heavy_ball_momentum])
        lag = _integer_lag(np.array([knobs.refresh_interval]))
        samples = np.array([float(knobs.completions_per_step)])
        n_it = np.array([float(knobs.num_iterations)])
        ev = self._evaluate(lr, mu, lag, samples, n_it, exact=True)
        regime, zeta, tau = self._details(lr, mu, lag, ev["stable"])
        layer = str(ev["layer"][0])
        if layer == "calibration":
            edge = self.edge
            assert edge is not None
            reason = (f"measured edge x*={edge.rate:.3g} at B={edge.samples_per_step:g}, "
                      f"K_ref={edge.refresh_interval:g}, {edge.horizon_steps} steps, moved to "
                      f"B={samples[0]:g}, K_ref={lag[0]}, num_iterations={int(n_it[0])}")
        else:
            reason = f"{ev['note']} (K={self._k:.3g}, K_c/K={self._rc:.3g}, K_ref={lag[0]})"
        return Verdict(
            stable=bool(ev["stable"][0]), margin=float(ev["margin"][0]),
            probability=float(ev["probability"][0]), layer=layer,  # type: ignore[arg-type]
            max_learning_rate=float(ev["max_learning_rate"][0]), regime=regime[0],
            damping_ratio=float(zeta[0]), time_constant=float(tau[0]), reason=reason)

    def assess_many(self, params: Mapping[str, Any], *, details: bool = False
                    ) -> dict[str, Any]:
        """Vectorised `assess` over arrays of knobs (10^6 configs in under a second).

        Discrete knobs are resolved once per distinct combination by `advisor.knobs`; the
        theory bound is exact on up to 4096 distinct (momentum, K_ref) pairs and read beyond
        that from checked momentum tables of exact solves (within 1e-3 of the exact solver
        except at its own discontinuities; `advisor.stability._table`). With ``horizon_steps``
        the table is a uniform 129-node one (max error ~2%).

        Args:
            params: Knob name -> array (or scalar), broadcast to one length, or a pandas
                DataFrame with one row per configuration. ``momentum`` may be NaN where a
                configuration has no heavy-ball momentum (e.g. AdamW rows).
            details: Also return ``regime``, ``damping_ratio`` and ``time_constant`` (exact
                Floquet multipliers, about 1 s per 10^6 configs).

        Returns:
            Dict of arrays: ``stable``, ``margin``, ``probability``, ``max_learning_rate``,
            ``layer`` (and the details).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
            ...                       stiffness_sampler=-0.75, std_error=0.02)
            >>> out = StabilityModel(est).assess_many(
            ...     {"learning_rate": [0.5, 5.0], "momentum": 0.0})
            >>> out["stable"].tolist()
            [True, False]
        """
        lr, mu, lag, samples, n_it = knob_arrays(
            _as_params(params), defaults=self._defaults, num_processes=self._num_processes,
            optimizer=self.optimizer, check_optimizer=self._check_optimizer)
        ev = self._evaluate(lr, mu, lag, samples, n_it, exact=False)
        out = {k: ev[k] for k in ("stable", "margin", "probability", "max_learning_rate",
                                  "layer")}
        if details:
            out["regime"], out["damping_ratio"], out["time_constant"] = self._details(
                lr, mu, lag, ev["stable"])
        return out

    def _many(self, params: Mapping[str, Any], details: bool) -> dict[str, Any] | None:
        """`assess_many` output when any knob in ``params`` is an array (else None)."""
        params = _as_params(params)
        if isinstance(params, Mapping) and any(np.ndim(v) > 0 for v in params.values()):
            return self.assess_many(params, details=details)
        return None

    def margin(self, params: Mapping[str, Any]) -> float | FloatArray:
        """``log(max_learning_rate / learning_rate)`` of `assess`; > 0 predicted stable.

        Array-valued knobs (as for `assess_many`, or a pandas DataFrame) give an array, one
        margin per config; the same holds for `probability_stable`, `regime`, `damping_ratio`,
        `time_constant` and `max_refresh_interval`. A pandas Series is one configuration.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> model = StabilityModel(est)
            >>> round(model.margin({"learning_rate": 1.0, "momentum": 0.0}), 3)
            0.693
            >>> model.margin({"learning_rate": [1.0, 4.0], "momentum": 0.0}).round(3).tolist()
            [0.693, -0.693]
        """
        many = self._many(params, details=False)
        return self.assess(params).margin if many is None else many["margin"]

    def probability_stable(self, params: Mapping[str, Any]) -> float | FloatArray:
        """Probability of being stable (`Verdict.probability`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.1)
            >>> StabilityModel(est).probability_stable({"learning_rate": 0.1, "momentum": 0.0})
            1.0
        """
        many = self._many(params, details=False)
        return self.assess(params).probability if many is None else many["probability"]

    def regime(self, params: Mapping[str, Any]) -> Regime | npt.NDArray[np.object_]:
        """Predicted regime of the mean reward (`Verdict.regime`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> StabilityModel(est).regime({"learning_rate": 0.05, "momentum": 0.9}).value
            'oscillatory'
            >>> [r.value for r in StabilityModel(est).regime(
            ...     {"learning_rate": [0.05, 0.5], "momentum": [0.9, 0.0]})]
            ['oscillatory', 'monotone']
        """
        many = self._many(params, details=True)
        return self.assess(params).regime if many is None else many["regime"]

    def damping_ratio(self, params: Mapping[str, Any]) -> float | FloatArray:
        """Damping ratio zeta of the dominant mode (`Verdict.damping_ratio`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> StabilityModel(est).damping_ratio({"learning_rate": 0.5, "momentum": 0.0})
            inf
        """
        many = self._many(params, details=True)
        return self.assess(params).damping_ratio if many is None else many["damping_ratio"]

    def time_constant(self, params: Mapping[str, Any]) -> float | FloatArray:
        """e-folding time of the dominant mode in optimizer steps (`Verdict.time_constant`).

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> round(StabilityModel(est).time_constant({"learning_rate": 0.01,
            ...                                          "momentum": 0.0}), 2)  # -1/ln(0.99)
            99.5
        """
        many = self._many(params, details=True)
        return self.assess(params).time_constant if many is None else many["time_constant"]

    def max_refresh_interval(self, params: Mapping[str, Any], *, limit: int = 64
                             ) -> float | FloatArray:
        """Largest K_ref such that the configuration is stable at every K_ref up to it.

        The refresh interval in ``params`` is ignored; K_ref = 1 ... ``limit`` are tried at the
        configuration's learning rate, momentum, batch and reuse. Array-valued knobs (as for
        `assess_many`) give one K_ref per configuration.

        Returns:
            The K_ref (0 if unstable even on-policy; ``inf`` if stable up to ``limit``); an
            array for array-valued knobs.

        Example:
            >>> from types import SimpleNamespace
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=0.0,
            ...                       stiffness_sampler=1.0, std_error=0.0)
            >>> StabilityModel(est).max_refresh_interval({"learning_rate": 0.3, "momentum": 0.0})
            6.0
        """
        limit = check_int("limit", limit, low=1)
        params = _as_params(params)
        if isinstance(params, Mapping) and any(np.ndim(v) > 0 for v in params.values()):
            return self._max_refresh_many(params, limit)
        kn = self._knobs(params)
        lag = np.arange(1, limit + 1)
        mu = np.full(limit, kn.heavy_ball_momentum)
        ev = self._evaluate(np.full(limit, kn.learning_rate), mu, lag,
                            np.full(limit, float(kn.completions_per_step)),
                            np.full(limit, float(kn.num_iterations)), exact=True)
        unstable = np.flatnonzero(~ev["stable"])
        return float(unstable[0]) if unstable.size else math.inf

    def _max_refresh_many(self, params: Mapping[str, Any], limit: int) -> FloatArray:
        """`max_refresh_interval` per row: the bound at K_ref = 1..limit per distinct condition.

        The bound does not depend on the learning rate, so it is evaluated once per distinct
        (momentum, completions per step, num_iterations) and K_ref; its running minimum over
        K_ref is non-increasing, and a row's answer is the number of K_ref it stays below.
        """
        lr, mu, _, samples, n_it = knob_arrays(
            params, defaults=self._defaults, num_processes=self._num_processes,
            optimizer=self.optimizer, check_optimizer=self._check_optimizer)
        key = np.zeros(lr.size, np.int64)
        for col in (mu, samples, n_it):  # one code per distinct condition (no row sort)
            _, code = _factorize(col)
            key = key * (int(code.max(initial=0)) + 1) + code
        _, inverse = _factorize(key)
        first = np.zeros(int(inverse.max(initial=-1)) + 1, np.int64)
        first[inverse[::-1]] = np.arange(lr.size)[::-1]  # one representative row per condition
        cond = np.column_stack([mu, samples, n_it])[first]
        n_cond = cond.shape[0]
        bound = np.empty((n_cond, limit))
        # passes of <= 2^20 (condition, K_ref) rows bound the memory; strided, so that every
        # pass spans the whole momentum range and the model's momentum tables are built once
        n_pass = -(-n_cond * limit // (1 << 20))
        for p in range(n_pass):
            sel = slice(p, None, n_pass)
            part = cond[sel]
            rep = np.repeat(part, limit, axis=0)
            ev = self._evaluate(np.ones(rep.shape[0]), rep[:, 0],
                                np.tile(np.arange(1, limit + 1), part.shape[0]), rep[:, 1],
                                rep[:, 2], exact=n_cond * limit <= 4096)
            bound[sel] = ev["max_learning_rate"].reshape(-1, limit)
        bound = np.minimum.accumulate(bound, axis=1)
        # stable at K_ref = 1..j  <=>  lr < min(bound[:j]); count those j per row
        inverse = inverse.ravel()
        n_ok = np.empty(lr.size)
        for i in range(0, lr.size, 1 << 16):  # blocks of rows bound the (rows, limit) temporary
            rows = slice(i, i + (1 << 16))
            n_ok[rows] = (bound[inverse[rows]] > lr[rows, None]).sum(axis=1)
        return np.where(n_ok >= limit, math.inf, n_ok)

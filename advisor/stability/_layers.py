"""The two layers of `StabilityModel` (construction and the per-layer bounds)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.exceptions import AdvisorWarning
from advisor.stability._calibration import EdgeEstimate
from advisor.stability._conditions import _factorize
from advisor.stability._conditions import _optional_float
from advisor.stability._conditions import _StiffnessSummary
from advisor.stability._nonlinear import _on_policy_factor
from advisor.stability._nonlinear import nonlinear_regime
from advisor.stability._nonlinear import on_policy_rows
from advisor.stability._nonlinear import simulated_edge
from advisor.stability._table import _Table
from advisor.stability._table import build_tables
from advisor.stability._table import lookup
from advisor.stability._table import table_bounds
from advisor.stability._theory import FloatArray
from advisor.stability._theory import _closed_form
from advisor.stability._theory import _critical_rate
from advisor.stability._theory import _damping_and_time_log
from advisor.stability._theory import _log_multiplier_pair
from advisor.stability._theory import _regime_of
from advisor.stability._theory import critical_rate


# Model-error floor of the theory layer: exact linear thresholds match the bandit within 0-4%.
_THEORY_SIGMA = 0.05
# Spread of the 1.4-2.4x nonlinear over-prediction that the safety factor replaces.
_SAFETY_SIGMA = 0.3
# Exact linear edges a* kept per model, keyed by (scheme, mu, lag): the Optuna sampler asks for
# one knob combination per trial, often one it has seen.
_RATE_CACHE_SIZE = 65536
# Distinct uncached (mu, lag) pairs solved one by one; beyond, checked tables (`_table`).
_EXACT_PAIRS = 4096
_TABLE_CACHE_SIZE = 512  # (scheme, lag, horizon) tables kept per model
# A table costs ~500-800 exact solves per distinct lag: with fewer distinct pairs than that,
# solving every pair is cheaper (and exact).
_TABLE_NODES = 800


def _std_error(value: Any) -> float | None:
    """``estimate.std_error``: None (absent: 0), a number >= 0, or inf/NaN (unknown: inf)."""
    if value is None:
        return None
    se = _optional_float(value, "estimate.std_error")
    if se is None:  # NaN or inf: the estimate could not state its uncertainty
        warnings.warn(f"`estimate.std_error` is {value!r}: K's uncertainty is unknown, so the "
                      "theory layer's probability of being stable is 0.5 at every learning "
                      "rate (the verdicts and max_learning_rate are unchanged). Re-run "
                      "estimate_stiffness with more or longer pilot curves to bound it.",
                      AdvisorWarning, stacklevel=3)
        return math.inf
    if se < 0:
        raise ValueError(f"`estimate.std_error` must be >= 0, got {value!r}. A "
                         "standard error is a spread, never negative.")
    return se


def _probability(margin: FloatArray, sigma: Any) -> FloatArray:
    """``Phi(margin / sigma)``; a zero sigma is a step at the edge (margin 0: unstable)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(np.asarray(sigma) > 0, margin / sigma, np.where(margin > 0, np.inf, -np.inf))
    return np.asarray(ndtr(z), float)


class _ModelLayers:
    """Theory and calibration bounds of `StabilityModel` (documented there)."""

    def __init__(
        self,
        estimate: Any,
        *,
        edge: EdgeEstimate | None = None,
        problem: Any = None,
        nonlinear_check: bool = True,
        batch_exponent: float | None = None,
        refresh_exponent: float | None = None,
        safety: float = 2.5,
        optimizer: Literal["sgd", "adamw"] | None = None,
        simulation_steps: int = 4000,
        horizon_steps: int | None = None,
        defaults: Mapping[str, Any] | None = None,
        num_processes: int = 1,
    ) -> None:
        if estimate is None or not hasattr(estimate, "stiffness"):
            raise TypeError(
                f"`estimate` must be a StiffnessEstimate (from advisor.estimate_stiffness) or an "
                f"object with .stiffness, .stiffness_current, .stiffness_sampler and "
                f".std_error, got {type(estimate).__name__}.")
        k = _optional_float(getattr(estimate, "stiffness", None), "estimate.stiffness")
        if k is None or k <= 0.0:
            raise ValueError(
                f"`estimate.stiffness` must be a finite number > 0, got "
                f"{getattr(estimate, 'stiffness', None)!r}. A non-positive stiffness means the "
                "pilot did not relax to a plateau: rerun it longer or at a smaller learning rate."
            )
        kc = _optional_float(getattr(estimate, "stiffness_current", None),
                             "estimate.stiffness_current")
        ko = _optional_float(getattr(estimate, "stiffness_sampler", None),
                             "estimate.stiffness_sampler")
        if kc is None and ko is not None:
            kc = k - ko
        if kc is None:
            warnings.warn("The estimate has no current/sampler split of K; the theory layer "
                          "assumes a pure delay (K_c = 0), which can be 2-3x off for piecewise "
                          "refresh. Add a frozen-sampler pilot to measure K_c.",
                          AdvisorWarning, stacklevel=2)
        se = _std_error(getattr(estimate, "std_error", None))
        if problem is not None:
            from advisor.bandit import BanditProblem

            if not isinstance(problem, BanditProblem):
                raise TypeError(f"`problem` must be an advisor.bandit.BanditProblem or None, got "
                                f"{type(problem).__name__}. Build one with BanditProblem(...) "
                                "or BanditProblem.reference().")
        if edge is not None and not isinstance(edge, EdgeEstimate):
            raise TypeError(f"`edge` must be an EdgeEstimate or None, got {type(edge).__name__}.")
        self.estimate = estimate
        self.edge = edge
        self.problem = problem
        self._k, self._rc, self._se = k, (0.0 if kc is None else kc / k), (se or 0.0)
        self._split_measured = kc is not None
        self._nonlinear = bool(nonlinear_check)
        for name, value in (("batch_exponent", batch_exponent),
                            ("refresh_exponent", refresh_exponent)):
            if value is not None:
                check_interval(name, value, low=-2.0, high=2.0)
        self._batch_exponent, self._refresh_exponent = batch_exponent, refresh_exponent
        self._safety = check_interval("safety", safety, low=1.0)
        self._sim_steps = check_int("simulation_steps", simulation_steps, low=100)
        self._horizon = None if horizon_steps is None else check_int(
            "horizon_steps", horizon_steps, low=1)
        if defaults is not None:
            from advisor.knobs import _check_names

            _check_names(defaults, "defaults")
        self._defaults = dict(defaults) if defaults is not None else None
        self._num_processes = check_int("num_processes", num_processes, low=1)
        found = optimizer or getattr(estimate, "optimizer", None) or (
            edge.optimizer if edge is not None else None) or "sgd"
        self.optimizer = check_options("optimizer", "adamw" if found == "adam" else found,
                                       ("sgd", "adamw"))
        if edge is not None and edge.optimizer != self.optimizer:
            raise ValueError(f"`edge.optimizer` must match the model's optimizer "
                             f"{self.optimizer!r}, got {edge.optimizer!r}. Build one model per "
                             "optimizer: K and the edge do not transfer between optimizers.")
        if self.optimizer == "sgd" and not {"optim", "momentum", "optim_args"} & set(
                self._defaults or {}):
            # K was measured with SGD: a config that names no optimizer means SGD here, not
            # TRL's default AdamW (which this model could only reject)
            self._defaults = {**(self._defaults or {}), "optim": "sgd"}
        self.surrogate = str(getattr(problem, "surrogate", "ratio"))
        self._sim_cache: dict[tuple[Any, ...], float] = {}
        self._rate_cache: dict[tuple[str, float, int, int | None], float] = {}
        self._table_cache: dict[tuple[str, int, int | None], _Table] = {}

    @property
    def stiffness(self) -> float:
        """K, the measured stiffness (per unit lr, heavy-ball units)."""
        return self._k

    @property
    def current_fraction(self) -> float:
        """K_c / K (0 when the split was not measured: pure delay)."""
        return self._rc

    @property
    def defaults(self) -> dict[str, Any]:
        """The knob values `assess` uses when a config leaves them out (a copy; for a pilot's
        model: the conditions it measured, e.g. its batch, group size and optimizer)."""
        return dict(self._defaults or {})

    # -- theory layer ------------------------------------------------------------------------
    def _linear_rate(self, mu: FloatArray, lag: Any, scheme: str, exact: bool) -> FloatArray:
        """Exact linear a* / K: per distinct (mu, lag) pair, or checked tables for many pairs.

        Up to ``_EXACT_PAIRS`` distinct pairs (``mu.size`` <= ``_EXACT_PAIRS``: always), or
        fewer than ``_TABLE_NODES`` per distinct lag, are solved one by one, so the numbers do
        not depend on the call's size. Beyond, without a horizon, a checked adaptive table in
        momentum per distinct lag answers (`advisor.stability._table`; error <= 1e-3 except
        at discontinuities of the exact solver itself). With a horizon each exact solve
        simulates the linear trajectory, so ``exact`` callers solve every pair and the others
        read a uniform 129-node table.
        """
        lag_vals, lag_inv = _factorize(np.asarray(lag))
        if self._horizon is not None:
            if not (exact or mu.size <= _EXACT_PAIRS or scheme == "sliding"):
                return self._uniform_table_rate(mu, lag_vals, lag_inv, scheme)
        elif mu.size > max(_EXACT_PAIRS, _TABLE_NODES * lag_vals.size) and \
                np.unique(mu[: 2 * _EXACT_PAIRS]).size > _EXACT_PAIRS:
            return self._table_rate(mu, lag_vals, lag_inv, scheme)  # skips a full sort
        mu_vals, mu_inv = np.unique(mu, return_inverse=True)
        code = mu_inv.ravel() * lag_vals.size + lag_inv
        pairs, pair_inv = np.unique(code, return_inverse=True)
        if self._horizon is None and pairs.size > max(_EXACT_PAIRS, _TABLE_NODES * lag_vals.size):
            return self._table_rate(mu, lag_vals, lag_inv, scheme)
        keys = [(scheme, float(mu_vals[c // lag_vals.size]), int(lag_vals[c % lag_vals.size]),
                 self._horizon) for c in pairs.tolist()]
        return np.asarray(self._exact_rates(keys)[pair_inv.ravel()] / self._k)

    def _uniform_table_rate(self, mu: FloatArray, lag_vals: Any, lag_inv: Any, scheme: str
                            ) -> FloatArray:
        """Table over u = -log(1 - mu) per distinct K_ref (horizon models, `assess_many`).

        log a* is smooth in u away from parametric resonances (median interpolation error
        2e-5, max 2%: tests bound it).
        """
        u_max = -math.log1p(-float(mu.max())) + 1e-9
        u = np.linspace(0.0, u_max, 129)
        table = np.log(critical_rate(-np.expm1(-u)[:, None], lag_vals[None, :].astype(np.int64),
                                     current_fraction=self._rc, refresh_scheme=scheme,
                                     horizon_steps=self._horizon))
        out = np.empty(mu.size)
        uq = -np.log1p(-mu)
        for j in range(lag_vals.size):
            rows = lag_inv == j
            out[rows] = np.interp(uq[rows], u, table[:, j])
        return np.exp(out) / self._k

    def _exact_rates(self, keys: list[tuple[str, float, int, int | None]]) -> FloatArray:
        """Exact a* of (scheme, mu, lag, horizon) keys, looked up in (or added to) the cache."""
        cache = self._rate_cache
        found = {key: cache[key] for key in keys if key in cache}
        todo = [i for i, key in enumerate(keys) if key not in found]
        if todo:
            # the Schur-Cohn sliding kernel (fast=True): ~40x faster than the companion
            # eigenvalues and bit-identical on 6,000 random configs (tests/test_stability.py)
            a = _critical_rate(np.array([keys[i][1] for i in todo]),
                               np.array([keys[i][2] for i in todo], np.int64),
                               self._rc, keys[todo[0]][0], self._horizon, fast=True)
            new = dict(zip((keys[i] for i in todo), a.tolist(), strict=True))
            found.update(new)
            if len(cache) + len(new) > _RATE_CACHE_SIZE:
                cache.clear()  # (the values of this call are kept in `found`)
            if len(new) <= _RATE_CACHE_SIZE:
                cache.update(new)
        return np.array([found[key] for key in keys])

    def _table_rate(self, mu: FloatArray, lag_vals: Any, lag_inv: Any, scheme: str
                    ) -> FloatArray:
        """a* / K from the checked per-lag momentum tables (built once per model and lag)."""
        u = -np.log1p(-mu)
        order = np.argsort(lag_inv, kind="stable")
        cuts = np.searchsorted(lag_inv[order], np.arange(lag_vals.size + 1))
        u_hi = np.array([float(u[order[cuts[j]:cuts[j + 1]]].max())
                         for j in range(lag_vals.size)])
        need = table_bounds(u_hi)
        cache = self._table_cache
        keys = [(scheme, int(g), self._horizon) for g in lag_vals.tolist()]
        missing = [j for j, key in enumerate(keys)
                   if key not in cache or cache[key].u_max < u_hi[j]]
        if missing:
            if len(cache) + len(missing) > _TABLE_CACHE_SIZE:
                cache.clear()
            built = build_tables(np.asarray(lag_vals, np.int64)[missing], need[missing],
                                 self._rc, scheme, self._horizon)
            cache.update({keys[j]: t for j, t in zip(missing, built, strict=True)})
        tables = [cache[key] for key in keys]
        out = np.empty(mu.size)
        for j, table in enumerate(tables):
            rows = order[cuts[j]:cuts[j + 1]]
            rate, unresolved = lookup(table, u[rows])
            if unresolved.any():
                fix = rows[unresolved]
                keys_fix = [(scheme, m, int(lag_vals[j]), self._horizon)
                            for m in mu[fix].tolist()]
                rate[unresolved] = self._exact_rates(keys_fix)
            out[rows] = rate
        return out / self._k

    def _in_nonlinear_regime(self, mu: FloatArray, lag: Any, scheme: str) -> Any:
        """Where a check replaces (or caps) the linear test: see `nonlinear_regime`."""
        if not self._nonlinear or self.optimizer != "sgd":
            return np.zeros(mu.shape, bool)
        return nonlinear_regime(mu, lag, scheme=scheme, surrogate=self.surrogate,
                                problem_known=self.problem is not None)

    @property
    def _multi_mode(self) -> bool:
        """A known bandit with more than 2 arms: K is a set of modes; the scalar test is rough.

        The pilot's tail measures the slowest excited mode while the stiffest mode sets the edge,
        and K_c, K_o of different modes do not share eigenvectors (bandit-findings.md 3, 10).
        """
        return self._nonlinear and self.problem is not None and self.problem.n_arms > 2

    def _theory(self, mu: FloatArray, lag: Any, scheme: str, exact: bool,
                linear_only: bool = False
                ) -> tuple[FloatArray, FloatArray, str, npt.NDArray[np.bool_]]:
        """Theory bound, its log-sigma, a note, and where a check (not the linear test) set it."""
        eta = self._linear_rate(mu, lag, scheme, exact)
        sigma0 = math.hypot(self._se / self._k, _THEORY_SIGMA)
        sigma = np.full(mu.shape, sigma0)
        flag = self._in_nonlinear_regime(mu, lag, scheme)
        if self._multi_mode:
            flag = np.ones(mu.shape, bool)
        note = "exact linear test"
        if linear_only:
            return eta, sigma, note, np.zeros(mu.shape, bool)
        few = flag.any() and self.problem is not None and (exact or len(np.unique(
            np.column_stack([mu[flag], lag[flag]]), axis=0)) <= 256)
        if few:
            # The bandit is simulated over the whole range where a run can settle (the ground
            # truth's range, from the measured K), and its first divergence sets the bound. A
            # scan below the linear edge missed too much on unseen hard prompts: the linear
            # horizon rule is 10-30% conservative (p_ref 0.155, sliding lag >= 8, mu = 0.5: the
            # unit-offset trajectory overstates the start's excitation of the slow mode), piecewise
            # refresh stays stable 3-9% above eta K < 2(1 + mu), and at mu = 0.8, K_ref >= 31 the
            # first divergent band lies 6x below the linear edge, with stable runs above it.
            sim = simulated_edge(self.problem, mu[flag], lag[flag], scheme=scheme,
                                 eta_lin=eta[flag], wide=True, stiffness=self._k,
                                 n_steps=self._sim_steps, cache=self._sim_cache)
            note = "exact linear test + simulated bandit ({})"
            # a threshold wherever the bandit was simulated: islands of the linear test above
            # its edge need not be islands of the bandit (unseen hard prompts: false-safe 4-12%)
            eta[flag] = sim
            if self._multi_mode:
                return eta, sigma, note.format("multi-mode problem"), flag
            return eta, sigma, note.format("nonlinear regime"), flag
        if self.problem is not None and flag.any():
            warnings.warn("Too many distinct (momentum, refresh) pairs to simulate the bandit; "
                          f"the nonlinear check falls back to the safety factor {self._safety:g}"
                          " and the momentum factors of the theory layer without a bandit.",
                          AdvisorWarning, stacklevel=3)
            flag = flag & (mu >= 0.5) & (np.asarray(lag) > 1) & (scheme == "piecewise")
        # Without the bandit: the safety factor where the linear test is known to over-predict
        # 1.4-2.4x (piecewise, K_ref > 1, mu >= 0.5), and on-policy the measured 2-arm momentum
        # factor (`momentum_factor`: 1.3x at mu 0.5 to 2.7x at 0.95; on-policy the linear test
        # was false-safe 1.36x at mu 0.9 on the 2-arm reference, 1.95x on the hard prompt). The
        # factor is an envelope: the true over-prediction lies between 1 and it, so the edge's
        # log-sigma grows by half its log.
        rows = np.zeros(0, np.int64)
        if self._nonlinear and self.optimizer == "sgd" and self.surrogate in ("ratio",
                                                                            "logprob"):
            rows = on_policy_rows(mu, lag, scheme=scheme)  # disjoint from flag (K_ref > 1)
        if not rows.size and not flag.any():
            return eta, sigma, note, flag
        parts, sizes = [], []
        if flag.any():
            eta[flag] /= self._safety
            sigma[flag] = np.hypot(sigma[flag], _SAFETY_SIGMA)
            parts.append("safety")
            sizes += [self._safety, self._safety]
        if rows.size:
            fac = _on_policy_factor(mu[rows])
            eta[rows] /= fac
            sigma[rows] = np.hypot(sigma0, 0.5 * np.log(fac))
            flag[rows] = True  # (a fresh array)
            parts.append("momentum factor")
            sizes += [float(fac.min()), float(fac.max())]
        lo, hi = min(sizes), max(sizes)
        size = f"{lo:.3g}" if hi - lo < 5e-4 * hi else f"{lo:.3g}-{hi:.3g}"
        note = (f"exact linear test / {' or '.join(parts)} {size} (no bandit simulated: "
                "nonlinear over-prediction of the linear test)")
        return eta, sigma, note, flag

    # -- calibration layer -------------------------------------------------------------------
    def _calibrated(self, mu: FloatArray, lag: Any, samples: Any, n_it: Any
                    ) -> tuple[FloatArray, FloatArray]:
        if self.edge is None:
            return np.full(mu.shape, np.inf), np.ones(mu.shape)
        fresh = np.maximum(np.asarray(lag, float) / np.asarray(n_it, float), 1.0)
        x, sigma = self.edge.predict(
            samples_per_step=samples, refresh_interval=fresh, num_iterations=n_it,
            batch_exponent=self._batch_exponent, refresh_exponent=self._refresh_exponent)
        return np.broadcast_to(x * (1.0 - mu) / self._k, mu.shape).copy(), np.broadcast_to(
            sigma, mu.shape).copy()

    # -- public API --------------------------------------------------------------------------
    def _check_optimizer(self, optimizer: str | None) -> None:
        opt = "adamw" if optimizer == "adam" else (optimizer or self.optimizer)
        check_options("optimizer", opt, ("sgd", "adamw"))
        if opt != self.optimizer:
            raise ValueError(f"`optimizer` must be {self.optimizer!r} (the optimizer K was "
                             f"measured with), got {optimizer!r}. Build one StabilityModel per "
                             "optimizer from its own pilot.")

    def _bounds(self, mu: FloatArray, lag: Any, samples: Any, n_it: Any, scheme: str,
                method: str, exact: bool) -> dict[str, Any]:
        """Per-layer bounds (arrays) for the requested method."""
        inf = np.full(mu.shape, np.inf)
        if method == "closed_form":
            eta_t = np.asarray(_closed_form(mu, lag), float) / self._k
            return dict(eta_t=eta_t, sig_t=np.full(mu.shape, _THEORY_SIGMA), eta_c=inf,
                        sig_c=np.ones(mu.shape), checked=np.ones(mu.shape, bool),
                        note="the paper's closed form eta K K_ref < 1-mu")
        if method == "calibrated" and self.edge is None:
            raise ValueError("`method` must not be 'calibrated' without an edge, got "
                             "'calibrated'. Pass edge=EdgeEstimate(...) from a pilot scan.")
        eta_t, sig_t, note, checked = (inf, np.ones(mu.shape), "", np.ones(mu.shape, bool)) \
            if method == "calibrated" else \
            self._theory(mu, lag, scheme, exact, linear_only=method == "exact")
        eta_c, sig_c = (inf, np.ones(mu.shape)) if method in ("theory", "exact") else \
            self._calibrated(mu, lag, samples, n_it)
        return dict(eta_t=eta_t, sig_t=sig_t, eta_c=eta_c, sig_c=sig_c, note=note,
                    checked=checked)

    def _evaluate(self, lr: FloatArray, mu: FloatArray, lag: Any, samples: Any, n_it: Any,
                  exact: bool) -> dict[str, Any]:
        b = self._bounds(mu, lag, samples, n_it, "piecewise", "auto", exact)
        eta_max = np.minimum(b["eta_t"], b["eta_c"])
        with np.errstate(divide="ignore"):
            m_t, m_c = np.log(b["eta_t"] / lr), np.log(b["eta_c"] / lr)
        prob = _probability(m_t, b["sig_t"]) * np.where(np.isfinite(m_c),
                                                        _probability(m_c, b["sig_c"]), 1.0)
        layer = np.array(["theory", "calibration"])[(b["eta_c"] < b["eta_t"]).view(np.int8)]
        return dict(stable=eta_max > lr, margin=np.log(eta_max / lr), probability=prob,
                    max_learning_rate=eta_max, layer=layer, note=b["note"], eta_t=b["eta_t"],
                    eta_c=b["eta_c"])

    def _details(self, lr: FloatArray, mu: FloatArray, lag: Any, stable: Any
                 ) -> tuple[npt.NDArray[np.object_], FloatArray, FloatArray]:
        s1, s2 = _log_multiplier_pair(lr * self._k, mu, self._rc, lag)
        zeta, tau = _damping_and_time_log(s1, s2)
        return _regime_of(zeta, stable), zeta, tau

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stiffness summary, edge, settings; the problem if any).

        Example:
            >>> from types import SimpleNamespace
            >>> from advisor.stability import StabilityModel
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=1.25,
            ...                       stiffness_sampler=-0.75, std_error=0.01)
            >>> d = StabilityModel(est).to_dict()
            >>> StabilityModel.from_dict(d).to_dict() == d
            True
        """
        problem = None
        if self.problem is not None:
            problem = {f.name: getattr(self.problem, f.name)
                       for f in dataclasses.fields(self.problem)}
            problem = {k: list(v) if isinstance(v, tuple) else v for k, v in problem.items()}
        return {
            "estimate": {"stiffness": self._k, "stiffness_current": self._rc * self._k
                         if self._split_measured else None,
                         "stiffness_sampler": (1.0 - self._rc) * self._k
                         if self._split_measured else None,
                         "std_error": self._se},
            "edge": None if self.edge is None else dataclasses.asdict(self.edge),
            "problem": problem,
            "nonlinear_check": self._nonlinear, "batch_exponent": self._batch_exponent,
            "refresh_exponent": self._refresh_exponent, "safety": self._safety,
            "optimizer": self.optimizer, "simulation_steps": self._sim_steps,
            "horizon_steps": self._horizon,
            "defaults": self._defaults, "num_processes": self._num_processes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Rebuild a model from `to_dict` output (the estimate becomes a 4-number summary).

        Example:
            >>> from types import SimpleNamespace
            >>> from advisor.stability import StabilityModel
            >>> est = SimpleNamespace(stiffness=0.5, stiffness_current=None,
            ...                       stiffness_sampler=None, std_error=0.0)
            >>> import warnings
            >>> with warnings.catch_warnings():
            ...     warnings.simplefilter("ignore")
            ...     m = StabilityModel.from_dict(StabilityModel(est).to_dict())
            >>> m.current_fraction
            0.0
        """
        d = dict(data)
        est = _StiffnessSummary(**d.pop("estimate"))
        edge = d.pop("edge")
        problem = d.pop("problem")
        if problem is not None:
            from advisor.bandit import BanditProblem

            problem = BanditProblem(**problem)
        return cls(est, edge=None if edge is None else EdgeEstimate(**edge), problem=problem,
                   **d)

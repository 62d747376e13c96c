"""Calibration layer: a measured stability edge and its transfer law.

The edge is the critical dimensionless rate ``x* = eta* K / (1 - mu_hb)`` of a pilot learning-rate
scan (``mu_hb = 0`` for AdamW). It transfers to other samples per step B, refresh intervals K_ref
and batch reuse n_it as ``x* = x*_0 (B/B_0)^a (K_ref/K_ref0)^b (n_it/n_it0)^(-1/3)``
(research notes theory.md section 6, real-trl-findings.md sections 4, 6, 9).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from typing import Literal

import numpy as np

from advisor._validation import as_float_array
from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import check_options
from advisor.stability._theory import FloatArray


# Default transfer exponents (real-trl-findings.md sections 4, 6, 9, and benchmarks/real_edge.py):
# the batch exponent was measured 0.4-0.9 across tasks; the steps_per_generation slope was
# +0.14 to +0.39 on the research task but -0.375 (SGD) / -0.125 (AdamW) on the built-in task,
# whose SGD edge at K_ref = 4 sat at or below 0.5x the on-policy edge. Each default is the end of
# the measured range that predicts the LOWER edge in the direction of extrapolation.
_BATCH_EXPONENT_UP, _BATCH_EXPONENT_DOWN = 0.4, 1.0
_REFRESH_EXPONENT_UP, _REFRESH_EXPONENT_DOWN = -0.5, 0.4
_REUSE_EXPONENT = -1.0 / 3.0  # num_iterations reuse: about 0.5x at 8 (Adam 0.46x, SGD 0.52x at 4)
_EXPONENT_SIGMA = 0.25  # uncertainty per unit |log ratio| of an extrapolated condition


@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeEstimate:
    """A measured stability edge in dimensionless units, and how it transfers.

    The edge is the critical rate ``x* = eta* K / (1 - mu_hb)`` (``mu_hb = 0`` for AdamW) found by
    a pilot learning-rate scan, expressed with the SAME stiffness K as the `StabilityModel` that
    uses it (then K cancels and the edge's uncertainty is the bracket's). It transfers to other
    conditions as

    .. math::
        x^*(B, K_{ref}, n_{it}) = x^*_0 (B/B_0)^a (K_{ref}/K_{ref,0})^b (n_{it}/n_{it,0})^{-1/3}.

    Attributes:
        rate: Point estimate of x* at the stated conditions (> 0).
        low: Largest x that stayed stable in the scan (0 < low <= rate).
        high: Smallest x that became unstable (high >= rate).
        samples_per_step: Completions per optimizer step B_0 of the scan.
        refresh_interval: K_ref0 of the scan (optimizer steps per generation; 1 = on-policy).
        horizon_steps: Length of the scan's runs; a longer training run meets more rare collapse
            events, so the edge is an upper bound beyond it (real-trl-findings.md section 4).
        optimizer: ``"sgd"`` (heavy ball) or ``"adamw"``.
        batch_exponent: Measured ``a`` (None: conservative default, 0.4 for B > B_0 and 1.0
            below; measured 0.4-0.9 across tasks).
        refresh_exponent: Measured ``b`` (None: -0.5 for K_ref > K_ref0, 0.4 below; measured
            slopes -0.375 to +0.39 across two tasks with TRL's steps_per_generation).
        num_iterations: ``num_iterations`` of the scan (batch reuse lowers the edge, ~0.5x at 8).
        n_runs: Runs behind the estimate (0 = unknown).

    Example:
        >>> edge = EdgeEstimate(rate=0.025, low=0.02, high=0.03, samples_per_step=128,
        ...                     horizon_steps=150, optimizer="sgd")
        >>> round(float(edge.predict(samples_per_step=512)[0]), 4)  # 4x batch, exponent 0.4
        0.0435
    """

    rate: float
    low: float
    high: float
    samples_per_step: float
    refresh_interval: float = 1.0
    horizon_steps: int
    optimizer: Literal["sgd", "adamw"]
    batch_exponent: float | None = None
    refresh_exponent: float | None = None
    num_iterations: int = 1
    n_runs: int = 0

    def __post_init__(self) -> None:
        setf = object.__setattr__
        setf(self, "rate", check_interval("rate", self.rate, low=0.0, low_closed=False))
        setf(self, "low", check_interval("low", self.low, low=0.0, high=self.rate,
                                         low_closed=False,
                                         hint="`low` is the last stable rate of the scan."))
        setf(self, "high", check_interval("high", self.high, low=self.rate,
                                          hint="`high` is the first unstable rate of the scan."))
        setf(self, "samples_per_step", check_interval("samples_per_step", self.samples_per_step,
                                                      low=0.0, low_closed=False))
        setf(self, "refresh_interval", check_interval("refresh_interval", self.refresh_interval,
                                                      low=1.0))
        setf(self, "horizon_steps", check_int("horizon_steps", self.horizon_steps, low=1))
        check_options("optimizer", self.optimizer, ("sgd", "adamw"))
        for name in ("batch_exponent", "refresh_exponent"):
            if getattr(self, name) is not None:
                setf(self, name, check_interval(name, getattr(self, name), low=-2.0, high=2.0))
        setf(self, "num_iterations", check_int("num_iterations", self.num_iterations, low=1))
        setf(self, "n_runs", check_int("n_runs", self.n_runs, low=0))

    @property
    def log_sigma(self) -> float:
        """Standard deviation of log x* implied by the bracket (half its log width)."""
        return 0.5 * math.log(self.high / self.low)

    def predict(
        self,
        *,
        samples_per_step: Any = None,
        refresh_interval: Any = None,
        num_iterations: Any = None,
        batch_exponent: float | None = None,
        refresh_exponent: float | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Edge x* and the standard deviation of log x* at other conditions (vectorised).

        Args:
            samples_per_step: Completions per optimizer step B (default: the scan's).
            refresh_interval: K_ref counting fresh generations only (default: the scan's).
            num_iterations: Batch reuse (default: the scan's).
            batch_exponent: Overrides the edge's (measured or default) batch exponent.
            refresh_exponent: Overrides the edge's refresh exponent.

        Returns:
            ``(rate, log_sigma)`` arrays broadcast over the inputs.

        Example:
            >>> edge = EdgeEstimate(rate=0.1, low=0.08, high=0.12, samples_per_step=64,
            ...                     horizon_steps=150, optimizer="adamw", batch_exponent=0.5)
            >>> round(float(edge.predict(samples_per_step=256)[0]), 3)
            0.2
        """
        b = as_float_array("samples_per_step", self.samples_per_step if samples_per_step is None
                           else samples_per_step, low=0.0, low_closed=False)
        k = as_float_array("refresh_interval", self.refresh_interval if refresh_interval is None
                           else refresh_interval, low=1.0)
        n = as_float_array("num_iterations", self.num_iterations if num_iterations is None
                           else num_iterations, low=1.0)
        for name, value in (("batch_exponent", batch_exponent),
                            ("refresh_exponent", refresh_exponent)):
            if value is not None:
                check_interval(name, value, low=-2.0, high=2.0)
        lb, lk = np.log(b / self.samples_per_step), np.log(k / self.refresh_interval)
        ln = np.log(n / self.num_iterations)
        a_exp = self.batch_exponent if batch_exponent is None else batch_exponent
        b_exp = self.refresh_exponent if refresh_exponent is None else refresh_exponent
        if a_exp is None:
            ea, sa = np.where(lb > 0, _BATCH_EXPONENT_UP, _BATCH_EXPONENT_DOWN), _EXPONENT_SIGMA
        else:
            ea, sa = np.full_like(lb, a_exp), 0.4 * _EXPONENT_SIGMA
        if b_exp is None:
            eb = np.where(lk > 0, _REFRESH_EXPONENT_UP, _REFRESH_EXPONENT_DOWN)
            sb = _EXPONENT_SIGMA
        else:
            eb, sb = np.full_like(lk, b_exp), 0.4 * _EXPONENT_SIGMA
        log_rate = math.log(self.rate) + ea * lb + eb * lk + _REUSE_EXPONENT * ln
        sigma = np.sqrt(self.log_sigma**2 + (sa * lb) ** 2 + (sb * lk) ** 2
                        + (_EXPONENT_SIGMA * ln) ** 2)
        return np.exp(log_rate), sigma

    @classmethod
    def from_scan(
        cls,
        learning_rates: Any,
        unstable: Any,
        *,
        stiffness: float,
        momentum: float = 0.0,
        samples_per_step: float,
        refresh_interval: float = 1.0,
        num_iterations: int = 1,
        horizon_steps: int,
        optimizer: Literal["sgd", "adamw"],
    ) -> EdgeEstimate:
        """Edge from a learning-rate scan (several seeds per rate allowed).

        A rate counts as unstable when at least half of its runs were; ``high`` is the first such
        rate, ``low`` the rate below it, and the point estimate their geometric mean, all in
        units ``x = eta K / (1 - mu)`` (``mu = 0`` for AdamW).

        Args:
            learning_rates: Learning rate of each run, shape ``(n,)``.
            unstable: Whether each run was labelled unstable, shape ``(n,)``.
            stiffness: K of the model that will use the edge.
            momentum: Heavy-ball mu of the scan.
            samples_per_step, refresh_interval, num_iterations, horizon_steps, optimizer:
                The scan's conditions (see the class attributes).

        Raises:
            ValueError: The scan has no unstable rate, or its lowest rate is already unstable.

        Example:
            >>> edge = EdgeEstimate.from_scan([0.01, 0.014, 0.02, 0.02, 0.03],
            ...                               [False, False, True, False, True], stiffness=1.0,
            ...                               samples_per_step=128, horizon_steps=150,
            ...                               optimizer="sgd")
            >>> edge.low, edge.high, round(edge.rate, 4)
            (0.014, 0.02, 0.0167)
        """
        lr = as_float_array("learning_rates", learning_rates, low=0.0, low_closed=False)
        flags = np.asarray(unstable)
        if flags.dtype.kind not in "biuf" or not np.all(np.isin(flags, (0, 1))):
            raise ValueError("`unstable` must hold booleans (or 0/1), one per run, got "
                             f"{unstable!r}." if flags.size <= 8 else
                             "`unstable` must hold booleans (or 0/1), one per run, got other "
                             "values (NaN, strings or numbers other than 0/1).")
        bad = flags.astype(bool)
        if lr.ndim != 1 or lr.shape != bad.shape or lr.size < 2:
            raise ValueError("`learning_rates` and `unstable` must be 1-D of one length >= 2, "
                             f"got shapes {lr.shape} and {bad.shape}.")
        k = check_interval("stiffness", stiffness, low=0.0, low_closed=False)
        mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
        check_options("optimizer", optimizer, ("sgd", "adamw"))
        if optimizer == "adamw" and mu != 0.0:
            raise ValueError(f"`momentum` must be 0 with optimizer='adamw', got {momentum!r}. "
                             "adam_beta1 is not heavy-ball momentum and does not scale the edge "
                             "(x = eta K for AdamW); drop `momentum`.")
        rates = np.unique(lr)
        frac = np.array([bad[lr == r].mean() for r in rates])
        if not (frac >= 0.5).any():
            raise ValueError("`unstable` must mark at least one rate unstable, got none. Extend "
                             f"the scan above {rates[-1]:g}.")
        first = int(np.argmax(frac >= 0.5))
        if first == 0:
            raise ValueError(f"`learning_rates` must start below the edge, got the lowest rate "
                             f"{rates[0]:g} already unstable. Extend the scan downward.")
        scale = k / (1.0 - mu)
        low, high = rates[first - 1] * scale, rates[first] * scale
        return cls(rate=math.sqrt(low * high), low=low, high=high,
                   samples_per_step=samples_per_step, refresh_interval=refresh_interval,
                   num_iterations=num_iterations, horizon_steps=horizon_steps,
                   optimizer=optimizer, n_runs=int(lr.size))

    @classmethod
    def combine(cls, edges: Any) -> EdgeEstimate:
        """Measure the transfer exponents from edges scanned at several conditions.

        ``log x* = c + a log B + b log K_ref`` is fitted by least squares; an exponent is only
        measured when its condition varies. The returned edge is the one with the most runs (the
        first on ties) with the measured exponents attached.

        Args:
            edges: Two or more `EdgeEstimate` of the same optimizer and num_iterations.

        Returns:
            The base edge with ``batch_exponent`` / ``refresh_exponent`` set where measured.

        Raises:
            ValueError: Fewer than two edges, mixed optimizers or reuse, or too few distinct
                conditions for the exponents that vary.

        Example:
            >>> e1 = EdgeEstimate(rate=0.02, low=0.018, high=0.022, samples_per_step=64,
            ...                   horizon_steps=150, optimizer="sgd")
            >>> e2 = dataclasses.replace(e1, rate=0.04, low=0.036, high=0.044,
            ...                          samples_per_step=256)
            >>> EdgeEstimate.combine([e1, e2]).batch_exponent
            0.5
        """
        edges = list(edges)
        if len(edges) < 2 or not all(isinstance(e, EdgeEstimate) for e in edges):
            raise ValueError(f"`edges` must be at least two EdgeEstimate, got {edges!r}.")
        for name in ("optimizer", "num_iterations"):
            values = {getattr(e, name) for e in edges}
            if len(values) > 1:
                raise ValueError(f"`edges` must share one {name}, got {sorted(values)!r}. "
                                 "Combine scans of one optimizer and batch reuse at a time.")
        y = np.log([e.rate for e in edges])
        cols = {"batch_exponent": np.log([e.samples_per_step for e in edges]),
                "refresh_exponent": np.log([e.refresh_interval for e in edges])}
        varying = [k for k, v in cols.items() if np.ptp(v) > 1e-12]
        design = np.column_stack([np.ones(len(edges))] + [cols[k] for k in varying])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError(
                f"`edges` must vary one condition at a time or give {design.shape[1]} independent "
                f"points, got {len(edges)} edges varying {varying}. Add a scan that changes only "
                "samples_per_step or only refresh_interval."
            )
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        base = max(edges, key=lambda e: e.n_runs)
        fitted = {k: round(float(c), 12) for k, c in zip(varying, coef[1:], strict=True)}
        return dataclasses.replace(base, **fitted)

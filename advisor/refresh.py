"""Refresh-interval recommendation: the most reward per wall-clock second that stays stable.

TRL generates once per ``steps_per_generation * num_iterations`` micro-steps (K_ref optimizer
steps with ``gradient_accumulation_steps=1``). A longer refresh interval can save wall time in
two ways: one ``generate`` call for ``steps_per_generation`` steps' completions amortises the
call's fixed overhead, and ``num_iterations > 1`` reuses each completion several times. Per
optimizer step the wall time is

.. math::
    t(s, n) = t_{train} + \\frac{g_0 + g_1 s}{s\\, n},

with ``t_train`` the optimizer step without generation, ``g_0`` the fixed cost of one generate
call and ``g_1`` the cost of one step's completions (from the pilot's timing). The reward
approaches its plateau with a time constant tau (optimizer steps), so the wall time to 90% of
the rise is ``ln(10) * tau * t(s, n)``. tau is the stability model's at each refresh interval
when the pilot measured the split K = K_c + K_o (the lag effect on the rate is then known, as in
the bandit); otherwise the on-policy tau is used for every setting (no lag effect was measured;
on real TRL runs the trajectory barely depends on steps_per_generation, real-trl-findings.md
section 4). Among the candidates that the model calls stable (calibrated edge) with
probability >= ``min_probability`` and well damped (theory damping ratio), the fastest wins,
unless it beats on-policy training (``s = n = 1``) by less than ``min_gain``: then the answer
is on-policy, said with the numbers.

Without a measured ``g_0`` the model takes it as 0: batching generation then saves nothing, the
honest answer on a tiny CPU model where generation cost grows with the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor._validation import finite_json
from advisor.exceptions import AdvisorError


__all__ = ["RefreshRecommendation", "RefreshTiming", "recommend_refresh"]

_LN10 = math.log(10.0)  # steps to 90% of the rise = ln(10) time constants
_Z90 = 1.645  # two-sided 90% normal quantile, for the stiffness-error band


@dataclass(frozen=True, kw_only=True)
class RefreshTiming:
    """Wall-time model of one optimizer step.

    Attributes:
        seconds_per_step: On-policy optimizer step, generation included (> 0).
        seconds_per_generation: One generate + scoring call for one step's completions
            (0 < it < seconds_per_step).
        generation_overhead: Fixed part ``g_0`` of a generate call, amortised by
            ``steps_per_generation`` (0 <= it <= seconds_per_generation). ``None``: not
            measured, taken as 0 (batched generation assumed not to pay off; conservative).

    Example:
        >>> t = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.12,
        ...                   generation_overhead=0.06)
        >>> round(t.step_seconds(steps_per_generation=4, num_iterations=1), 4)
        0.155
    """

    seconds_per_step: float
    seconds_per_generation: float
    generation_overhead: float | None = None

    def __post_init__(self) -> None:
        check_interval("seconds_per_step", self.seconds_per_step, low=0.0, low_closed=False)
        check_interval("seconds_per_generation", self.seconds_per_generation, low=0.0,
                       high=self.seconds_per_step, low_closed=False,
                       hint="It is part of seconds_per_step, which includes generation.")
        if self.generation_overhead is not None:
            check_interval("generation_overhead", self.generation_overhead, low=0.0,
                           high=self.seconds_per_generation)

    @property
    def train_seconds(self) -> float:
        """Optimizer step without generation, ``t_train``."""
        return self.seconds_per_step - self.seconds_per_generation

    def step_seconds(self, *, steps_per_generation: int, num_iterations: int) -> float:
        """Mean wall time of one optimizer step at a refresh setting, ``t(s, n)``."""
        g0 = self.generation_overhead or 0.0
        g1 = self.seconds_per_generation - g0
        s, n = steps_per_generation, num_iterations
        return self.train_seconds + (g0 + g1 * s) / (s * n)

    @classmethod
    def from_pilot(cls, pilot: Any) -> RefreshTiming:
        """Timing from a `advisor.pilot.PilotResult`.

        The fixed overhead is the pilot's ``generation_overhead`` (measured by its ``"timing"``
        run) when set; else, when the pilot measured generation at two batch sizes (its
        ``"batch"`` runs), it is solved from the two; otherwise it is left unmeasured.

        Raises:
            AdvisorError: The pilot recorded no timing.
        """
        sps, spg = getattr(pilot, "seconds_per_step", None), getattr(pilot,
                                                                    "seconds_per_generation", None)
        if not sps or not spg:
            raise AdvisorError("the pilot recorded no timing (seconds_per_step / "
                               "seconds_per_generation); rerun it, or pass `timing=` "
                               "RefreshTiming(...) measured on your machine.")
        # the pilot's own measurement (its "timing" run) first, else two batch sizes
        overhead = getattr(pilot, "generation_overhead", None)
        if overhead is None:
            overhead = _overhead_from_runs(pilot, float(spg))
        return cls(seconds_per_step=float(sps), seconds_per_generation=min(float(spg),
                   float(sps)), generation_overhead=overhead)


def _overhead_from_runs(pilot: Any, g_base: float) -> float | None:
    """g0 from generation times at two batch sizes: g(B) = g0 + g1 B / B0 (None if absent)."""
    b0 = float(getattr(pilot, "samples_per_step", 0) or 0)
    other = [r for r in getattr(pilot, "runs", ()) if r.samples_per_step != b0
             and r.seconds_per_generation]
    if not other or b0 <= 0:
        return None
    import statistics

    factor = other[0].samples_per_step / b0
    g_big = statistics.median(r.seconds_per_generation for r in other)
    g1 = (g_big - g_base) / (factor - 1.0)
    g0 = g_base - g1
    return min(max(g0, 0.0), g_base) if math.isfinite(g0) else None


@dataclass(frozen=True, kw_only=True)
class RefreshRecommendation:
    """The recommended refresh setting, with the reasoning behind it.

    Attributes:
        steps_per_generation: Recommended ``steps_per_generation``.
        num_iterations: Recommended ``num_iterations``.
        learning_rate: The learning rate it was computed for.
        momentum: Heavy-ball momentum (0 for AdamW).
        seconds_to_90: Predicted wall time to 90% of the rise (seconds).
        seconds_to_90_low: Lower end of its 90% band (stiffness error).
        seconds_to_90_high: Upper end.
        on_policy_seconds_to_90: The same for ``steps_per_generation = num_iterations = 1``.
        speedup: ``on_policy_seconds_to_90 / seconds_to_90``.
        candidates: Every candidate: refresh setting, stable, deciding layer, damping ratio, tau,
            step seconds, seconds to 90%.
        reasoning: Plain sentences, in order.
        timing: The timing model used.
    """

    steps_per_generation: int
    num_iterations: int
    learning_rate: float
    momentum: float
    seconds_to_90: float
    seconds_to_90_low: float
    seconds_to_90_high: float
    on_policy_seconds_to_90: float
    speedup: float
    candidates: tuple[dict[str, Any], ...]
    reasoning: tuple[str, ...]
    timing: RefreshTiming

    @property
    def refresh_interval(self) -> int:
        """K_ref = steps_per_generation * num_iterations (gradient_accumulation_steps = 1)."""
        return self.steps_per_generation * self.num_iterations

    def grpo_kwargs(self) -> dict[str, Any]:
        """Paste-ready ``GRPOConfig`` keyword arguments.

        Example:
            >>> from types import SimpleNamespace
            >>> from advisor.stability import StabilityModel
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> t = RefreshTiming(seconds_per_step=0.1, seconds_per_generation=0.04)
            >>> recommend_refresh(StabilityModel(est), learning_rate=0.01, timing=t,
            ...                   momentum=0.5).grpo_kwargs()["optim_args"]
            'momentum=0.5'
        """
        from advisor.knobs import to_grpo_kwargs

        params: dict[str, Any] = {"learning_rate": self.learning_rate,
                                  "steps_per_generation": self.steps_per_generation,
                                  "num_iterations": self.num_iterations,
                                  "gradient_accumulation_steps": 1}
        if self.momentum > 0:
            params["momentum"] = self.momentum
        return to_grpo_kwargs(params)

    def explain(self) -> str:
        """Reasoning, the candidate table, and the paste-ready config."""
        head = (f"{'spg':>4} {'n_it':>4} {'K_ref':>5} {'stable':>6} {'P':>5} {'zeta':>6} "
                f"{'tau used':>8} {'s/step':>8} {'s to 90%':>9}  excluded because")
        rows = [f"{c['steps_per_generation']:>4} {c['num_iterations']:>4} "
                f"{c['refresh_interval']:>5} {str(c['stable']):>6} "
                f"{c['probability_stable']:>5.2f} {c['damping_ratio']:>6.3g} "
                f"{c['tau_used']:>8.3g} {c['step_seconds']:>8.3g} "
                f"{c['seconds_to_90']:>9.3g}  {c['why']}" for c in self.candidates]
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.grpo_kwargs().items())
        return "\n".join([*self.reasoning, "", head, *rows, "", f"GRPOConfig({kwargs})"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (config kwargs included); an infinite value (the damping ratio of
        a first-order, non-oscillating response) becomes ``None``, as strict JSON requires.

        Example:
            >>> from types import SimpleNamespace
            >>> from advisor.stability import StabilityModel
            >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0,
            ...                       stiffness_sampler=0.0, std_error=0.0)
            >>> t = RefreshTiming(seconds_per_step=0.1, seconds_per_generation=0.04)
            >>> d = recommend_refresh(StabilityModel(est), learning_rate=0.01, timing=t).to_dict()
            >>> d["candidates"][0]["damping_ratio"] is None  # zeta = inf at momentum 0
            True
        """
        import dataclasses

        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "timing"}
        out["timing"] = dataclasses.asdict(self.timing)
        out["grpo_kwargs"] = self.grpo_kwargs()
        out["candidates"] = [dict(c) for c in self.candidates]
        out["reasoning"] = list(self.reasoning)
        return finite_json(out)


def recommend_refresh(
    source: Any,
    *,
    learning_rate: float,
    momentum: float = 0.0,
    timing: RefreshTiming | None = None,
    max_refresh: int = 16,
    num_iterations: Sequence[int] = (1,),
    min_damping_ratio: float = 0.7,
    min_gain: float = 0.1,
    min_probability: float = 0.8,
    params: dict[str, Any] | None = None,
) -> RefreshRecommendation:
    """Recommend ``steps_per_generation`` and ``num_iterations`` for the most reward per second.

    Args:
        source: A `advisor.pilot.PilotResult` (model and timing), or a
            `advisor.stability.StabilityModel` together with ``timing``.
        learning_rate: The planned learning rate (> 0).
        momentum: Heavy-ball momentum in [0, 1) (SGD); 0 for AdamW.
        timing: Wall-time model; default from the pilot.
        max_refresh: Largest ``steps_per_generation * num_iterations`` considered.
        num_iterations: ``num_iterations`` values considered (1 = fresh completions every
            step, the default). Reuse (2, 4, ...) saves generation time, and the calibration
            layer lowers the edge for it, but on the tiny task reused completions learned less
            per step (final reward 0.57 vs 0.90 at num_iterations 2 vs 1, research notes
            trl-optuna-notes.md section 2.2), which tau does not capture: opt in knowingly.
        min_damping_ratio: Keep only settings whose theory damping ratio is at least this
            (0.7: at most a few percent overshoot).
        min_gain: A setting must beat on-policy training by this fraction of wall time to be
            recommended (the pilot's timings are medians of noisy steps).
        min_probability: Keep only settings predicted stable with at least this probability.
        params: Other knobs (GRPOConfig names) for the stability check, e.g. the batch size.

    Returns:
        The :class:`RefreshRecommendation` (``explain()`` prints the reasoning).

    Raises:
        AdvisorError: Not even on-policy training is stable at this learning rate.

    Example:
        >>> from types import SimpleNamespace
        >>> from advisor.stability import StabilityModel
        >>> est = SimpleNamespace(stiffness=1.0, stiffness_current=1.0, stiffness_sampler=0.0,
        ...                       std_error=0.05, plateau=0.9)
        >>> fast_gen = RefreshTiming(seconds_per_step=0.2, seconds_per_generation=0.15,
        ...                          generation_overhead=0.12)
        >>> rec = recommend_refresh(StabilityModel(est), learning_rate=0.02, timing=fast_gen,
        ...                         num_iterations=(1,))
        >>> rec.steps_per_generation > 1, rec.speedup > 1.5
        (True, True)
    """
    lr = check_interval("learning_rate", learning_rate, low=0.0, low_closed=False)
    mu = check_interval("momentum", momentum, low=0.0, high=1.0, high_closed=False)
    max_refresh = check_int("max_refresh", max_refresh, low=1)
    check_interval("min_gain", min_gain, low=0.0)
    model = source.model() if callable(getattr(source, "model", None)) else source
    if timing is None:
        if not hasattr(source, "seconds_per_step"):
            raise AdvisorError("`timing` must be given with a StabilityModel (a PilotResult "
                               "carries its own): RefreshTiming(seconds_per_step=..., "
                               "seconds_per_generation=...).")
        timing = RefreshTiming.from_pilot(source)
    if model.optimizer != "sgd" and mu != 0.0:
        raise ValueError(f"`momentum` must be 0 for an {model.optimizer} model, got {mu!r}. "
                         "adam_beta1 is not heavy-ball momentum.")
    check_interval("min_probability", min_probability, low=0.0, high=1.0)
    rel = _relative_error(model)
    floors = (min_damping_ratio, min_probability)
    cands = [_candidate(model, timing, lr, mu, s, n, dict(params or {}), floors)
             for n in sorted({check_int("num_iterations", v, low=1) for v in num_iterations})
             for s in range(1, max_refresh // n + 1)]
    lag_known = getattr(model.estimate, "stiffness_current", None) is not None
    for c in cands:  # without a measured split, tau is the on-policy (measured) one
        c["tau_used"] = c["time_constant"] if lag_known else cands[0]["time_constant"]
        c["seconds_to_90"] = _LN10 * c["tau_used"] * c["step_seconds"]
    base = cands[0]
    if not base["ok"]:
        raise AdvisorError(
            f"learning_rate={lr:g} is not stable even on-policy ({base['why']}); lower it "
            "below the edge before choosing a refresh interval (see `grpo-advisor report`).")
    ok = [c for c in cands if c["ok"]]
    best = min(ok, key=lambda c: (c["seconds_to_90"], c["refresh_interval"]))
    gain = 1.0 - best["seconds_to_90"] / base["seconds_to_90"]
    chosen = best if gain >= min_gain else base
    return RefreshRecommendation(
        steps_per_generation=chosen["steps_per_generation"],
        num_iterations=chosen["num_iterations"], learning_rate=lr, momentum=mu,
        seconds_to_90=chosen["seconds_to_90"], seconds_to_90_low=chosen["seconds_to_90"] / (
            1.0 + _Z90 * rel), seconds_to_90_high=chosen["seconds_to_90"] * (1.0 + _Z90 * rel),
        on_policy_seconds_to_90=base["seconds_to_90"],
        speedup=base["seconds_to_90"] / chosen["seconds_to_90"],
        candidates=tuple({k: v for k, v in c.items() if k != "ok"} for c in cands),
        reasoning=_reasoning(timing, base, best, chosen, gain, min_gain, rel, len(ok),
                             cands, lag_known),
        timing=timing)


def _relative_error(model: Any) -> float:
    est = model.estimate
    k, se = float(est.stiffness), float(getattr(est, "std_error", 0.0) or 0.0)
    return se / k if k > 0 else 0.0


def _candidate(model: Any, timing: RefreshTiming, lr: float, mu: float, s: int, n: int,
               params: dict[str, Any], floors: tuple[float, float]) -> dict[str, Any]:
    knobs = {**params, "learning_rate": lr, "steps_per_generation": s, "num_iterations": n,
             "gradient_accumulation_steps": 1}
    if model.optimizer == "sgd":
        knobs["momentum"] = mu
    v = model.assess(knobs)
    zeta_min, p_min = floors
    why = "" if v.stable else f"beyond the {v.layer} edge (lr max {v.max_learning_rate:.3g})"
    if not why and not v.probability >= p_min:
        why = f"P(stable) {v.probability:.2f} < {p_min:g}"
    if not why and not v.damping_ratio >= zeta_min:
        why = f"damping ratio {v.damping_ratio:.2g} < {zeta_min:g}"
    return {"steps_per_generation": s, "num_iterations": n, "refresh_interval": s * n,
            "stable": bool(v.stable), "probability_stable": float(v.probability),
            "damping_ratio": float(v.damping_ratio), "time_constant": float(v.time_constant),
            "step_seconds": timing.step_seconds(steps_per_generation=s, num_iterations=n),
            "layer": str(v.layer), "ok": not why, "why": why}


def _reasoning(timing: RefreshTiming, base: dict[str, Any], best: dict[str, Any],
               chosen: dict[str, Any], gain: float, min_gain: float, rel: float, n_ok: int,
               all_cands: list[dict[str, Any]], lag_known: bool) -> tuple[str, ...]:
    share = timing.seconds_per_generation / timing.seconds_per_step
    g0 = timing.generation_overhead
    layer = "calibrated edge" if base.get("layer") == "calibration" else "theory layer"
    faster = [c for c in all_cands if not c["ok"]
              and c["seconds_to_90"] < base["seconds_to_90"] * (1.0 - min_gain)]
    lines = [
        f"Timing: {timing.seconds_per_step:.3g} s per on-policy step, of which generation "
        f"{timing.seconds_per_generation:.3g} s ({share:.0%}); fixed cost per generate call "
        + (f"{g0:.3g} s." if g0 is not None else
           "not measured, taken as 0, so steps_per_generation saves no time (measure it: "
           "time one generate call at steps_per_generation=4 and pass "
           "--generation-overhead)."),
        f"{n_ok} of {len(all_cands)} refresh settings are predicted stable ({layer}) "
        f"with P >= the floor and well "
        f"damped (theory); the reward time constant at this learning rate is "
        f"{base['time_constant']:.3g} steps on-policy (+-{_Z90 * rel:.0%} at 90% from the "
        "measured stiffness error, the same factor for every setting). "
        + ("The measured split K_c/K_o gives each refresh interval its own time constant "
           "(theory)." if lag_known else "No lag effect on the rate was measured, so every "
           "setting uses the on-policy time constant and the ranking rests on the timing."),
        f"On-policy (steps_per_generation=1, num_iterations=1): {base['step_seconds']:.3g} s "
        f"per step, {base['seconds_to_90']:.3g} s to 90% of the rise.",
    ]
    if best is base and faster:
        lines.append(f"{len(faster)} faster settings were excluded ({faster[0]['why']} at "
                     f"steps_per_generation={faster[0]['steps_per_generation']}), so the answer "
                     "is 1; a pilot that narrows the edge (more seeds) may admit them.")
    elif best is base:
        lines.append("No longer refresh interval is faster: generation does not pay to "
                     "amortise here, so the answer is 1.")
    elif chosen is base:
        lines.append(
            f"Best alternative: steps_per_generation={best['steps_per_generation']}, "
            f"num_iterations={best['num_iterations']} saves only {gain:.0%} "
            f"({best['seconds_to_90']:.3g} s vs {base['seconds_to_90']:.3g} s), below the "
            f"{min_gain:.0%} needed to beat timing noise, so the answer is 1 (on-policy).")
    else:
        lines.append(
            f"Recommended: steps_per_generation={chosen['steps_per_generation']}, "
            f"num_iterations={chosen['num_iterations']}: {chosen['step_seconds']:.3g} s per "
            f"step, {chosen['seconds_to_90']:.3g} s to 90% ({gain:.0%} less wall time), "
            f"predicted stable (P = {chosen['probability_stable']:.2f}) with damping ratio "
            f"{chosen['damping_ratio']:.2g}.")
    return tuple(lines)

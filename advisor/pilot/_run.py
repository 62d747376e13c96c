"""`run_pilot`: plan the budget, scan the edge, then K and timing from the same runs."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor.exceptions import AdvisorError
from advisor.pilot._checks import _check_batch
from advisor.pilot._checks import _check_dataset
from advisor.pilot._checks import _model_source
from advisor.pilot._checks import _optimizer_of
from advisor.pilot._checks import _wrap_reward
from advisor.pilot._result import PilotResult
from advisor.pilot._scan import _bracket
from advisor.pilot._scan import _BudgetExhausted
from advisor.pilot._scan import _Scan
from advisor.pilot._scan import _warn
from advisor.pilot._stiffness import _curve_runs
from advisor.pilot._stiffness import _estimate
from advisor.pilot._timing import _TIMING_REFRESH
from advisor.pilot._timing import _TIMING_STEPS
from advisor.pilot._timing import _summarize


if TYPE_CHECKING:
    from trl import GRPOConfig

    from advisor.stability import EdgeEstimate

_MIN_HORIZON = 20  # steps: the instability rule needs a 30-step window to be meaningful
# steps kept back for the end: the timing run and at least one stiffness curve at lo / 2 (a
# second learning rate for the linearity check even when every bisection point collapsed)
_RESERVE = _TIMING_STEPS + _MIN_HORIZON


def run_pilot(
    model: Any,
    reward_funcs: Any,
    train_dataset: Any,
    args: GRPOConfig,
    *,
    processing_class: Any = None,
    planned_steps: int | None = None,
    budget_steps: int | None = None,
    seeds: Sequence[int] = (0, 1),
    output_dir: str | Path = "grpo-advisor-pilot",
    horizon_steps: int | None = None,
    scan_steps: int | None = None,
    lr_ratio: float = 4.0,
    n_levels: int = 6,
    n_refine: int = 2,
    batch_factor: int | None = None,
    refresh_interval: int | None = None,
    n_threads: int | None = 1,
    progress: bool = True,
) -> PilotResult:
    """Measure stiffness, stability edge and timing with real ``GRPOTrainer`` runs.

    Args:
        model: Model path or ``PreTrainedModel`` (an object is saved once to
            ``output_dir/init_model`` so every run starts from the same weights, and so that
            ``beta > 0`` works).
        reward_funcs: As for ``GRPOTrainer``; callables are checked to return a finite float
            for every completion.
        train_dataset: ``datasets.Dataset`` with a ``prompt`` column.
        args: The planned ``GRPOConfig``: its optimizer, batch, group size and lr are scanned
            around; scheduler, logging and refresh are overridden (on-policy, constant lr).
        processing_class: Tokenizer (required when ``model`` is an object).
        planned_steps: Steps of the planned run (default ``args.max_steps``).
        budget_steps: Budget in optimizer steps (default 3 x planned_steps). The pilot plans
            its runs up front so that it never spends more: one full-horizon confirmation
            level (every seed) and the timing run are reserved, the ladder and the bisection
            use the rest, and what is left at the end buys one more stiffness curve.
        seeds: Seeds per scan level (at least 2).
        output_dir: Folder for runs (reused to resume an interrupted pilot).
        horizon_steps: Length of the confirmation runs that certify the stable end of the
            bracket with every seed (default: planned_steps, or less if the budget is short).
            Collapses are rare events, so the edge holds for runs up to this length.
        scan_steps: Length of the ladder and bisection runs (default horizon_steps / 6, at
            least 20: short runs leave the default budget room for two bisections).
        lr_ratio: Ratio between ladder levels (> 1).
        n_levels: Maximum ladder levels walked from the start lr.
        n_refine: Bisections of the bracket (each halves its log width).
        batch_factor: If set (integer >= 2), a second scan at ``batch_factor`` x the
            completions per step measures the batch exponent of the edge.
        refresh_interval: If set (integer >= 2), a second scan with
            ``steps_per_generation = refresh_interval x gradient_accumulation_steps`` measures
            the refresh exponent of the edge.
            A second point is skipped (`AdvisorWarning`) when the budget does not hold it.
        n_threads: torch threads inside runs (1 is fastest for tiny models; None: unchanged).
        progress: Show a progress bar on stderr.

    Returns:
        `PilotResult`; ``result.model()`` is the calibrated stability model and
        ``result.timing()`` the wall-time model of `advisor.refresh`. K comes from the stable
        on-policy scan and confirmation curves (see `advisor.pilot._stiffness`).

    Raises:
        ValueError: No ``prompt`` column, batch not holding whole groups, budget too small
            (the message names the minimum).
        RewardFunctionError: A reward function returned None/NaN.
        AdvisorError: The scan found no edge.

    Example:
        >>> from advisor.tasks import builtin_task, default_config  # doctest: +SKIP
        >>> task = builtin_task()  # doctest: +SKIP
        >>> res = run_pilot(task.model_path, list(task.reward_funcs), task.train_dataset,
        ...                 default_config("out"),
        ...                 processing_class=task.tokenizer)  # doctest: +SKIP
        >>> res.edge.low < res.edge.high  # doctest: +SKIP
        True
    """
    _check_dataset(train_dataset)
    samples_per_step = _check_batch(args)
    optimizer, momentum = _optimizer_of(args)
    seeds = tuple(check_int("seeds", s, low=0) for s in seeds)
    if len(set(seeds)) < 2:
        raise ValueError(f"`seeds` must hold at least 2 distinct seeds, got {seeds!r}. The edge "
                         "is a rare-event threshold: one seed cannot bracket it.")
    if planned_steps is None:
        planned_steps = args.max_steps
    planned = check_int("planned_steps", planned_steps, low=1,
                        hint="Pass planned_steps= or set args.max_steps.")
    budget = check_int("budget_steps", 3 * planned if budget_steps is None else budget_steps,
                       low=1)
    horizon = check_int("horizon_steps", horizon_steps if horizon_steps is not None else min(
        planned, max(_MIN_HORIZON, (budget - 2 * _MIN_HORIZON - _RESERVE) // len(seeds))),
        low=_MIN_HORIZON)
    short = check_int("scan_steps", scan_steps if scan_steps is not None
                      else max(_MIN_HORIZON, horizon // 6), low=_MIN_HORIZON)
    ratio = check_interval("lr_ratio", lr_ratio, low=1.0, low_closed=False)
    need = len(seeds) * horizon + 2 * short + _RESERVE
    if budget < need:
        raise ValueError(
            f"`budget_steps` must be at least len(seeds) * horizon_steps + 2 * scan_steps + "
            f"{_RESERVE} (timing and stiffness runs) = {need} for a scan, got {budget}. Raise "
            f"budget_steps or lower horizon_steps (>= {_MIN_HORIZON}).")
    second = {"batch": (check_int("batch_factor", batch_factor, low=2), 1)
              if batch_factor is not None else None,
              "refresh": (1, check_int("refresh_interval", refresh_interval, low=2))
              if refresh_interval is not None else None}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = dict(args=args, model=_model_source(model, processing_class, out),
               reward_funcs=[_wrap_reward(f) for f in (
                   reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs])],
               train_dataset=train_dataset, processing_class=processing_class, output_dir=out,
               samples_per_step=samples_per_step, seeds=seeds, n_threads=n_threads,
               start_reward=None)
    scan = _Scan(ctx, budget, progress)
    # the plan: the timing and one stiffness run are always reserved; each second point one
    # confirmation level and two short runs when the budget holds them (else it is skipped)
    extra = len(seeds) * horizon + 2 * short
    wanted = [p for p, cond in second.items() if cond is not None]
    held = [p for i, p in enumerate(wanted) if need + (i + 1) * extra <= budget]
    for purpose in wanted[len(held):]:
        _warn(f"the budget {budget} does not hold the second {purpose} point (it needs "
              f"{extra} more steps): it is skipped (raise budget_steps).")
    try:
        lo, hi, hi_full = _bracket(scan, "scan", args.learning_rate * ratio, ratio, n_levels,
                                   n_refine, (short, horizon),
                                   reserve=_RESERVE + len(held) * extra)
    except _BudgetExhausted:
        raise ValueError(
            f"`budget_steps` must cover a scan that reaches the edge, got {budget} (spent "
            f"{scan.cost} without bracketing it; the minimum for these horizons is {need}). "
            "Raise budget_steps, lower horizon_steps, or start closer to the edge with "
            "args.learning_rate.") from None
    brackets = _second_points(scan, lo, hi, {p: second[p] for p in held}, ratio, n_levels,
                              n_refine, (short, horizon), extra)
    _timing_and_stiffness_runs(scan, lo, horizon)
    stiff, _ = _estimate(scan.runs, optimizer, momentum, samples_per_step, max_lr=lo)
    edge = _edge(scan, stiff.stiffness, lo, hi, hi_full, optimizer, momentum, samples_per_step,
                 horizon)
    if brackets:
        from advisor.stability import EdgeEstimate

        edge = EdgeEstimate.combine([edge] + [dataclasses.replace(
            _edge(scan, stiff.stiffness, lo2, hi2, full2, optimizer, momentum,
                  samples_per_step * factor, horizon, purpose=purpose),
            refresh_interval=float(refresh))
            for purpose, (factor, refresh), (lo2, hi2, full2) in brackets])
    return _result(scan, stiff, edge, (lo, _point(lo, hi, hi_full), hi), optimizer, momentum,
                   args, planned, horizon, budget)


def _timing_and_stiffness_runs(scan: _Scan, lo: float, horizon: int) -> None:
    """The timing run at ``lo / 2``; a stiffness curve only when K lacks a second rate.

    The stable scan and confirmation curves at or below ``lo`` usually span two learning
    rates; when they do not (every bisection point collapsed), one curve at
    ``lo / sqrt(2)`` takes the budget left over (at least ``_MIN_HORIZON`` steps, kept back by
    the plan; at most the horizon). It stays close to ``lo``: far below the edge the curves
    rise to a higher plateau than next to it, and one pinned plateau cannot fit both.
    """
    seed = scan.ctx["seeds"][0]
    if scan.affords(_TIMING_STEPS):
        scan.run("timing", lo / 2, seed, _TIMING_STEPS, refresh=_TIMING_REFRESH)
    lrs = {r.learning_rate for r in _curve_runs(scan.runs, scan.ctx["samples_per_step"], lo)}
    left = scan.budget - scan.cost
    if len(lrs) < 2 and left >= _MIN_HORIZON:
        scan.run("stiffness", lo / math.sqrt(2.0), seed, min(horizon, left))


def _rate(lr: float, k: float, momentum: float) -> float:
    return lr * k / (1.0 - momentum)


def _point(lo: float, hi: float, hi_full: bool) -> float:
    """Point estimate of the edge at the full horizon.

    A collapse is a first-passage event, so an lr that collapsed in a short run collapses in a
    long one too, but one that survived a short run may not survive a long one: an unstable end
    seen only in short runs is an upper bound, and the point estimate is then the confirmed
    stable end. With a full-horizon collapse the edge lies inside the bracket: its log centre.
    """
    return math.sqrt(lo * hi) if hi_full else lo


def _edge(scan: _Scan, k: float, lo: float, hi: float, hi_full: bool, optimizer: str,
          momentum: float, samples_per_step: int, horizon: int, purpose: str = "scan"
          ) -> EdgeEstimate:
    from advisor.stability import EdgeEstimate

    return EdgeEstimate(rate=_rate(_point(lo, hi, hi_full), k, momentum),
                        low=_rate(lo, k, momentum), high=_rate(hi, k, momentum),
                        samples_per_step=samples_per_step, refresh_interval=1,
                        horizon_steps=horizon, optimizer=optimizer,  # type: ignore[arg-type]
                        n_runs=sum(r.purpose == purpose for r in scan.runs))


def _second_points(scan: _Scan, lo: float, hi: float,
                   points: Mapping[str, tuple[int, int] | None], ratio: float, n_levels: int,
                   n_refine: int, steps: tuple[int, int], extra: int
                   ) -> list[tuple[str, tuple[int, int], tuple]]:
    """Edge brackets (in lr) at another batch or refresh interval, for the exponents.

    Each point keeps ``extra`` steps per later point and the end runs (``_RESERVE``) back.
    """
    out: list[tuple[str, tuple[int, int], tuple]] = []
    todo = [(p, c) for p, c in points.items() if c is not None]
    for i, (purpose, (factor, refresh)) in enumerate(todo):
        try:  # start above the expected edge: batch exponent <= 1, refresh exponent ~0
            found = _bracket(scan, purpose, math.sqrt(lo * hi) * factor, ratio, n_levels,
                             n_refine, steps, batch_factor=factor, refresh=refresh,
                             reserve=_RESERVE + (len(todo) - i - 1) * extra)
        except (_BudgetExhausted, AdvisorError) as exc:
            _warn(f"the second {purpose} point found no edge ({exc or 'budget exhausted'}); "
                  "its exponent keeps the conservative default (raise budget_steps).")
            continue
        out.append((purpose, (factor, refresh), found))
    return out


def _result(scan: _Scan, stiff: Any, edge: EdgeEstimate, edge_lr: tuple[float, float, float],
            optimizer: str, momentum: float, args: Any, planned: int, horizon: int,
            budget: int) -> PilotResult:
    runs = scan.runs
    step, gen, train, overhead, notes = _summarize(runs, scan.ctx["samples_per_step"])
    starts = [r.rewards[0] for r in runs if r.rewards and math.isfinite(r.rewards[0])]
    for note in notes:
        _warn(note)
    if not stiff.linear:
        notes.append("the rate was not linear in the learning rate: " + stiff.message)
    if len(set(stiff.learning_rates)) < 2:
        notes.append("K comes from one learning rate: linearity was not checked")
    if overhead is None:
        notes.append("no timing run fit the budget: the fixed cost per generate call is not "
                     "measured")
    if scan.cost > budget:  # only resumed runs of an earlier, larger budget get here
        notes.append(f"cost {scan.cost} steps exceeded the budget {budget}: runs reloaded "
                     "from an earlier pilot are counted in full")
    return PilotResult(
        stiffness=stiff, edge=edge, edge_learning_rate=edge_lr, optimizer=optimizer,
        momentum=momentum, samples_per_step=scan.ctx["samples_per_step"],
        num_generations=args.num_generations, planned_steps=planned, horizon_steps=horizon,
        adam_beta1=None if optimizer == "sgd" else float(args.adam_beta1),
        budget_steps=budget, cost_steps=scan.cost,
        cost_seconds=sum(r.seconds for r in runs), seconds_per_step=step,
        seconds_per_generation=gen, seconds_per_train_step=train,
        generation_overhead=overhead, linear=bool(stiff.linear),
        start_reward=statistics.fmean(starts) if starts else math.nan,
        runs=tuple(runs), histories=dict(scan.histories), message="; ".join(notes))

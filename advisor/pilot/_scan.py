"""The edge scan: runs within the budget, the ladder, the bisection and the confirmation."""

from __future__ import annotations

import json
import math
import statistics
import sys
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from advisor.exceptions import AdvisorError
from advisor.exceptions import AdvisorWarning
from advisor.pilot import _runner
from advisor.pilot._result import PilotRun
from advisor.pilot._result import Purpose
from advisor.pilot._result import _jsonable
from advisor.pilot._result import _read_histories
from advisor.pilot._result import _write_histories


class _BudgetExhausted(Exception):
    """A run would take the pilot past the step limit of its current phase."""


class _Scan:
    """Runs (or reloads) pilot runs, keeps the budget and the progress bar."""

    def __init__(self, ctx: dict[str, Any], budget: int, progress: bool) -> None:
        self.ctx = ctx
        self.budget = budget
        self.limit = budget  # steps the current phase may spend up to (always <= budget)
        self.runs: list[PilotRun] = []
        self.histories: dict[str, list[dict]] = {}
        self.cost = 0
        self.bar = _progress_bar(budget) if progress else None

    def run(self, purpose: Purpose, lr: float, seed: int, steps: int, batch_factor: int = 1,
            refresh: int = 1) -> PilotRun:
        per_step = self.ctx["samples_per_step"] * batch_factor
        name = f"{purpose}-lr{lr:.6g}-s{seed}-b{per_step}-h{steps}"
        name += f"-k{refresh}" if refresh > 1 else ""
        folder = self.ctx["output_dir"] / "runs"
        if name in self.histories:  # already run in this pilot (a confirmation level)
            return next(r for r in self.runs if r.name == name)
        if (folder / f"{name}.json").exists():  # resume: a finished run is never redone
            data = json.loads((folder / f"{name}.json").read_text())
            run = PilotRun(**{**data, "rewards": tuple(data["rewards"])})
            rows = _read_histories(folder / f"{name}.csv").get(name, [])
        else:
            if self.cost + steps > min(self.limit, self.budget):
                raise _BudgetExhausted
            spec = dict(name=name, purpose=purpose, learning_rate=lr, seed=seed, steps=steps,
                        batch_factor=batch_factor, refresh=refresh, samples_per_step=per_step)
            run, rows = _runner._train_once(spec, self.ctx)
            folder.mkdir(parents=True, exist_ok=True)
            _write_histories(folder / f"{name}.csv", {name: rows})
            tmp = folder / f"{name}.json.tmp"
            tmp.write_text(json.dumps(run.to_dict(), default=_jsonable))
            tmp.replace(folder / f"{name}.json")
        self.runs.append(run)
        self.histories[name] = rows
        self.cost += run.steps_done
        # p0 of the shared rule: the first logged reward of every run samples the start policy
        starts = [r.rewards[0] for r in self.runs if r.rewards and math.isfinite(r.rewards[0])]
        if starts:
            self.ctx["start_reward"] = statistics.fmean(starts)
        if self.bar is not None:
            self.bar(run, self.cost)
        return run

    def affords(self, steps: int) -> bool:
        """Whether ``steps`` more optimizer steps fit under the current limit."""
        return self.cost + steps <= min(self.limit, self.budget)

    def level(self, purpose: Purpose, lr: float, steps: int, batch_factor: int = 1,
              refresh: int = 1, *, seeds: Sequence[int]) -> bool:
        """Seeds at one lr; stops at the first unstable seed. True if all stable."""
        for seed in seeds:
            if self.run(purpose, lr, seed, steps, batch_factor, refresh).unstable:
                return False
        return True


def _progress_bar(total: int) -> Callable[[PilotRun, int], None]:
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="pilot", unit="step", file=sys.stderr)

        def update(run: PilotRun, cost: int) -> None:
            bar.update(max(0, min(cost, total) - bar.n))
            bar.set_postfix_str(f"lr={run.learning_rate:.3g} s{run.seed} {run.reason}")

        return update
    except ImportError:  # pragma: no cover - tqdm ships with transformers
        def write(run: PilotRun, cost: int) -> None:
            print(f"pilot {cost}/{total} steps: lr={run.learning_rate:.3g} seed={run.seed} "
                  f"{run.reason}", file=sys.stderr)

        return write


def _bracket(scan: _Scan, purpose: Purpose, start_lr: float, ratio: float, n_levels: int,
             n_refine: int, steps: tuple[int, int], batch_factor: int = 1, refresh: int = 1,
             *, reserve: int = 0) -> tuple[float, float, bool]:
    """Bracket the edge in lr: ladder, bisection, then confirmation with every seed.

    The ladder and the bisection run the first seed for ``steps[0]`` steps and may spend the
    budget up to ``reserve`` steps plus one confirmation level (every seed at the full horizon
    ``steps[1]``). The stable end is then confirmed with every seed and moved down while one of
    them collapses; a lower level runs as many full-horizon seeds as the budget still holds
    (fewer than all, or none: partly confirmed or unconfirmed, with an `AdvisorWarning`).
    Collapsed runs stop early, so most of the budget goes to the long runs next to the edge
    (successive-halving style). The flag says whether the unstable end collapsed at the full
    horizon (else it comes from short runs only).

    Raises:
        _BudgetExhausted: The ladder or the first confirmation level does not fit.
        AdvisorError: No edge within ``n_levels`` ladder levels.
    """
    seeds = scan.ctx["seeds"]
    confirm = len(seeds) * steps[1]
    top = scan.limit
    scan.limit = top - reserve - confirm

    def level(lr: float, seeds: Sequence[int] = seeds[:1], n: int = steps[0]) -> bool:
        return scan.level(purpose, lr, n, batch_factor, refresh, seeds=seeds)

    try:
        lo, hi = _ladder(level, start_lr, ratio, n_levels)
        try:
            for _ in range(n_refine):
                mid = math.sqrt(lo * hi)
                lo, hi = (mid, hi) if level(mid) else (lo, mid)
        except _BudgetExhausted:
            _warn("the budget ran out while refining the edge bracket; it is wider than "
                  "asked (raise `budget_steps` for a sharper edge).")
        scan.limit = top - reserve
        step = math.sqrt(hi / lo)
        hi_full = False
        for _ in range(n_levels):  # confirm: every seed must survive at the stable end
            survived = _confirm(scan, purpose, lo, steps[1], batch_factor, refresh)
            if survived is not None:
                if survived < len(seeds):
                    _warn(f"the budget held {survived} of {len(seeds)} full-horizon runs at the "
                          f"stable end lr={lo:.3g} after a seed collapsed one level up: "
                          f"{'it is unconfirmed' if not survived else 'it is partly confirmed'}"
                          " (raise `budget_steps` to confirm it with every seed).")
                return lo, hi, hi_full
            # first down by the bisection step; a second failure means the short runs were far
            # off, so then by the ladder's half step
            lo, hi, step, hi_full = lo / step, lo, max(step, math.sqrt(ratio)), True
    finally:
        scan.limit = top
    raise AdvisorError(f"No learning rate above {lo:g} was stable for every seed; the edge is "
                       "dominated by seed noise. Raise the batch size or use more seeds.")


def _confirm(scan: _Scan, purpose: Purpose, lr: float, steps: int, batch_factor: int,
             refresh: int) -> int | None:
    """Full-horizon runs of every seed the budget holds at ``lr``.

    Returns the number that survived, or None if one collapsed.
    """
    survived = 0
    for seed in scan.ctx["seeds"]:
        if not scan.affords(steps):
            break
        if scan.run(purpose, lr, seed, steps, batch_factor, refresh).unstable:
            return None
        survived += 1
    return survived


def _ladder(level: Callable[[float], bool], start_lr: float, ratio: float, n_levels: int
            ) -> tuple[float, float]:
    """Walk lr levels ``ratio`` apart from ``start_lr`` to the first stable/unstable pair."""
    lo = hi = math.nan
    if level(start_lr):
        lo = start_lr
        for _ in range(n_levels):  # walk up while stable
            if not level(lo * ratio):
                hi = lo * ratio
                break
            lo *= ratio
    else:
        hi = start_lr
        for _ in range(n_levels):  # walk down; collapsed runs stop early, so this is cheap
            if level(hi / ratio):
                lo = hi / ratio
                break
            hi /= ratio
    if math.isnan(lo) or math.isnan(hi):
        found = "unstable" if math.isnan(hi) else "stable"
        raise AdvisorError(
            f"The learning-rate scan found no {found} level within {n_levels} levels x{ratio:g} "
            f"from lr={start_lr:g}. Set `args.learning_rate` near the range you plan to use, or "
            "raise `n_levels`.")
    return lo, hi


def _warn(message: str) -> None:
    warnings.warn(message, AdvisorWarning, stacklevel=3)


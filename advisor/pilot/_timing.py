"""Timing: seconds per optimizer step with and without generation, and the fixed cost of a
generate call, for `advisor.refresh.RefreshTiming`.

A generate + scoring call for ``s`` steps' completions takes ``g(s) = g_0 + g_1 s``. The
on-policy runs give ``g(1)``; one short ``"timing"`` run with ``steps_per_generation =
_TIMING_REFRESH`` (a few generate calls, at a learning rate below the edge) gives ``g(s)``, so
``g_1 = (g(s) - g(1)) / (s - 1)`` and ``g_0 = g(1) - g_1``. Every run also measures the
optimizer step without its generate call (``t_train``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from advisor.pilot._result import PilotRun


_TIMING_REFRESH = 4  # steps_per_generation of the timing run
_TIMING_STEPS = 16  # its optimizer steps: 4 generate calls, the first (warm-up) left out


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _summarize(runs: Sequence[PilotRun], samples_per_step: int
               ) -> tuple[float | None, float | None, float | None, float | None, list[str]]:
    """``(seconds_per_step, seconds_per_generation, seconds_per_train_step,
    generation_overhead, notes)`` from the runs' timings.

    ``generation_overhead`` is None without a timing run. A solved ``g_0`` outside
    ``[0, g(1)]`` (timing noise on a shared machine) is set to the nearest end, and a note
    says so.
    """
    on_policy = [r for r in runs if r.refresh_interval == 1
                 and r.samples_per_step == samples_per_step]
    step = _median([r.seconds_per_step for r in on_policy])
    gen1 = _median([r.seconds_per_generation for r in on_policy])
    train = _median([r.seconds_per_train_step for r in runs
                     if r.samples_per_step == samples_per_step])
    notes: list[str] = []
    timed = [r for r in runs if r.purpose == "timing" and r.seconds_per_generation is not None]
    if gen1 is None or not timed:
        return step, gen1, train, None, notes
    s = timed[-1].refresh_interval
    gen_s = _median([r.seconds_per_generation for r in timed])
    per_step = (gen_s - gen1) / (s - 1)  # g_1
    overhead = gen1 - per_step  # g_0
    if overhead < 0.0:
        notes.append(f"the fixed cost per generate call solved to {overhead:.3g} s (< 0, timing "
                     "noise): set to 0")
        overhead = 0.0
    elif overhead > gen1:
        notes.append(f"the fixed cost per generate call solved to {overhead:.3g} s (> the whole "
                     f"call, {gen1:.3g} s: timing noise): set to the whole call")
        overhead = gen1
    return step, gen1, train, overhead, notes

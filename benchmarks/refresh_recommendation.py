"""Is `recommend-refresh`'s answer right on real GRPO runs of the built-in task?

Issue 7, "Done when": the recommendation, run for real, reaches the same final reward as
``steps_per_generation = 1`` within noise, in no more wall time (less where the pilot measured
generation to be a large share of a step). The script builds the built-in task, runs the pilot
(AdamW, lr 3e-4, 150 planned steps; cached, so a rerun resumes), prints
`advisor.refresh.recommend_refresh`'s reasoning, then trains for real with every seed:
``steps_per_generation = 1`` and the recommended setting (plus ``steps_per_generation = 4``
as a contrast when the answer is 1), same lr and steps. Per arm: wall time of
``trainer.train()``, seconds per step (measured vs the pilot's timing model), final reward
(mean of the last 20 logged rewards, carried forward) and the instability label.

Verdict: "same final reward within noise" means ``|mean difference| < 2 x pooled seed SD``
(the SD of the per-seed final rewards, pooled over the two arms).

Usage:
    nice -n 10 python benchmarks/refresh_recommendation.py     # full run (~2-8 min on 2 cores)
    python benchmarks/refresh_recommendation.py --quick         # smoke run (< 60 s)
Runs are kept under --work-dir (default: the grpo-advisor cache folder), so a rerun resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path


@dataclasses.dataclass
class Args:
    steps: int = 150
    """optimizer steps of the pilot's planned run and of every real run"""
    learning_rate: float = 3e-4
    """AdamW learning rate of the pilot's plan and of every real run"""
    seeds: tuple[int, ...] = (0, 1)
    """seeds of the pilot levels"""
    run_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """seeds of every arm of the real runs"""
    contrast_spg: int = 4
    """steps_per_generation also run when the recommendation is 1"""
    last_n: int = 20
    """final reward = mean of the last `last_n` logged rewards (carried forward)"""
    pilot_budget: int | None = None
    """pilot budget in steps (None: the default 3 x steps)"""
    work_dir: str | None = None
    """pilot and runs, kept for resuming (None: <grpo-advisor cache>/refresh_recommendation)"""
    out: str = "benchmarks/results/refresh_recommendation.md"
    """the results table"""
    quick: bool = False
    """smoke mode: 20-step pilot plan with the minimum budget, 12-step runs"""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=Args.steps)
    parser.add_argument("--learning-rate", type=float, default=Args.learning_rate)
    parser.add_argument("--pilot-budget", type=int, default=None)
    parser.add_argument("--work-dir", default=Args.work_dir)
    parser.add_argument("--out", default=Args.out)
    ns = parser.parse_args(argv)
    args = Args(steps=ns.steps, learning_rate=ns.learning_rate, pilot_budget=ns.pilot_budget,
                work_dir=ns.work_dir, out=ns.out, quick=ns.quick)
    if args.quick:  # the pilot's minimum budget at a 20-step horizon: 2 x 20 + 2 x 20 + 36
        args.steps, args.pilot_budget, args.last_n, args.run_seeds = 20, 116, 5, (0, 1)
    return args


# ------------------------------------------------------------------------------------------
# ONE REAL RUN (cached as JSON)
# ------------------------------------------------------------------------------------------
def train(task, args: Args, work: Path, *, spg: int, n_iter: int, seed: int,
          start_reward: float, run_steps: int) -> dict:
    """One GRPOTrainer run at a refresh setting; wall time of ``trainer.train()`` only."""
    name = f"lr{args.learning_rate:g}-steps{run_steps}-spg{spg}-nit{n_iter}-seed{seed}"
    path = work / "runs" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    import torch
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOTrainer

    from advisor.instability import label_run
    from advisor.pilot import _carried_rewards
    from advisor.tasks import default_config

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    cfg = default_config(str(work / "trainer"), learning_rate=args.learning_rate,
                         max_steps=run_steps, seed=seed, steps_per_generation=spg,
                         num_iterations=n_iter)
    trainer = GRPOTrainer(model=task.model_path, reward_funcs=list(task.reward_funcs), args=cfg,
                          train_dataset=task.train_dataset, processing_class=task.tokenizer)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    error = None
    t0 = time.perf_counter()
    try:
        trainer.train()
    except Exception as exc:  # NaN probabilities after a collapse
        error = f"{type(exc).__name__}: {exc}"[:200]
    seconds = time.perf_counter() - t0
    rows = [r for r in trainer.state.log_history if "loss" in r or "reward" in r]
    rewards = _carried_rewards(rows)
    label = label_run(rows or [{"step": 1, "reward": math.nan}], start_reward=start_reward,
                      error=error)
    result = {"name": name, "spg": spg, "num_iterations": n_iter, "seed": seed,
              "steps_done": int(trainer.state.global_step), "seconds": seconds,
              "final_reward": statistics.fmean(rewards[-args.last_n:]) if rewards else math.nan,
              "unstable": bool(label.unstable), "reason": label.reason, "error": error,
              "rewards": rewards}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def reward_at(run: dict, seconds: float, last_n: int) -> float:
    """Final reward had the run stopped after ``seconds`` of ``train()`` (uniform step time)."""
    rewards = run["rewards"]
    step = min(len(rewards), max(1, round(len(rewards) * seconds / run["seconds"])))
    return statistics.fmean(rewards[max(0, step - last_n):step])


# ------------------------------------------------------------------------------------------
# MAIN: task -> pilot -> recommendation -> real runs -> table and verdict
# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from advisor.pilot import run_pilot
    from advisor.refresh import recommend_refresh
    from advisor.tasks import builtin_task
    from advisor.tasks import cache_dir
    from advisor.tasks import default_config

    torch.set_num_threads(1)
    work = Path(args.work_dir) if args.work_dir else cache_dir() / "refresh_recommendation"
    task = builtin_task()

    # 1. the pilot (resumes from work/pilot-*/runs)
    t0 = time.perf_counter()
    plan = default_config(str(work / "trainer"), learning_rate=args.learning_rate,
                          max_steps=args.steps)
    pilot = run_pilot(task.model_path, list(task.reward_funcs), task.train_dataset, plan,
                      processing_class=task.tokenizer, planned_steps=args.steps,
                      budget_steps=args.pilot_budget, seeds=args.seeds,
                      output_dir=work / f"pilot-steps{args.steps}-budget{args.pilot_budget}",
                      progress=False)
    pilot_wall = time.perf_counter() - t0
    timing = pilot.timing()
    print(f"pilot: {pilot.cost_steps} steps, {pilot.cost_seconds:.0f} s of runs "
          f"({pilot_wall:.0f} s now, cached runs reload), edge lr bracket "
          f"[{pilot.edge_learning_rate[0]:.3g}, {pilot.edge_learning_rate[2]:.3g}], "
          f"{timing.seconds_per_step:.3f} s/step, generation {timing.seconds_per_generation:.3f}"
          f" s, fixed per call {timing.generation_overhead}", flush=True)

    # 2. the recommendation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = recommend_refresh(pilot, learning_rate=args.learning_rate)
    print("\n" + rec.explain() + "\n", flush=True)

    # 3. real runs: spg = 1, the recommendation, and a contrast when the answer is 1
    arms = [(1, 1), (rec.steps_per_generation, rec.num_iterations)]
    if arms[1] == (1, 1):
        arms[1] = (args.contrast_spg, 1)
    start = pilot.start_reward if math.isfinite(pilot.start_reward) else None
    runs: dict[tuple[int, int], list[dict]] = {a: [] for a in arms}
    for seed in args.run_seeds:  # seed-major, arms interleaved: machine load hits both arms alike
        for spg, n_iter in arms:
            r = train(task, args, work, spg=spg, n_iter=n_iter, seed=seed,
                      start_reward=start, run_steps=args.steps)
            runs[(spg, n_iter)].append(r)
            print(f"  spg={spg} n_iter={n_iter} seed={seed}: {r['seconds']:.1f} s, final "
                  f"reward {r['final_reward']:.3f}, unstable={r['unstable']} "
                  f"({r['reason']})", flush=True)

    # 4. table and verdict
    rows, stats = [], {}
    base_wall = statistics.fmean(r["seconds"] for r in runs[arms[0]])
    for (spg, n_iter), rs in runs.items():
        wall = mean_sd([r["seconds"] for r in rs])
        final = mean_sd([r["final_reward"] for r in rs])
        same_time = final if (spg, n_iter) == arms[0] else mean_sd(
            [reward_at(r, base_wall, args.last_n) for r in rs])
        per_step = statistics.fmean(r["seconds"] / max(r["steps_done"], 1) for r in rs)
        predicted = timing.step_seconds(steps_per_generation=spg, num_iterations=n_iter)
        role = ("on-policy" if (spg, n_iter) == (1, 1) else
                "recommended" if (spg, n_iter) == (rec.steps_per_generation,
                                                    rec.num_iterations) else "contrast")
        stats[(spg, n_iter)] = (wall, final, per_step, predicted, same_time)
        rows.append(f"| {spg} | {n_iter} | {role} | {len(rs)} | {wall[0]:.1f} +- {wall[1]:.1f} "
                    f"| {per_step:.3f} | {predicted:.3f} | {final[0]:.3f} +- {final[1]:.3f} | "
                    f"{same_time[0]:.3f} +- {same_time[1]:.3f} | "
                    f"{sum(r['unstable'] for r in rs)}/{len(rs)} |")
    base, other = stats[arms[0]], stats[arms[1]]
    diff = other[1][0] - base[1][0]
    pooled = math.sqrt((base[1][1] ** 2 + other[1][1] ** 2) / 2.0)
    same = abs(diff) < 2.0 * pooled
    word = "same within noise" if same else ("higher" if diff > 0 else "lower")
    diff_t = other[4][0] - base[1][0]  # at on-policy's wall time
    pooled_t = math.sqrt((base[1][1] ** 2 + other[4][1] ** 2) / 2.0)
    word_t = ("same within noise" if abs(diff_t) < 2.0 * pooled_t else
              "higher" if diff_t > 0 else "lower")
    ratio = other[0][0] / base[0][0]
    pred_ratio = other[3] / base[3]
    other_label = f"steps_per_generation={arms[1][0]}, num_iterations={arms[1][1]}"
    at_time = (f"at on-policy's wall time ({base[0][0]:.1f} s) its reward is {diff_t:+.3f} vs "
               f"on-policy's final (2 x pooled SD = {2 * pooled_t:.3f}: {word_t})")
    if rec.steps_per_generation == 1 and rec.num_iterations == 1:
        right = ("right" if word_t != "higher" else
                 "wrong (the contrast gains more reward per wall-clock second)")
        verdict = (f"Recommendation: steps_per_generation=1 (on-policy). Contrast {other_label}: "
                   f"final reward {diff:+.3f} vs on-policy after the same {args.steps} steps "
                   f"(2 x pooled seed SD = {2 * pooled:.3f}: {word}), wall time x{ratio:.2f} "
                   f"(timing model predicted x{pred_ratio:.2f}); {at_time}. On reward per "
                   f"wall-clock second, the objective of recommend-refresh, the answer 1 was "
                   f"{right}.")
    else:
        ok = same and ratio <= 1.0
        verdict = (f"Recommendation: {other_label}; predicted speedup x{rec.speedup:.2f} "
                   f"(step time x{pred_ratio:.2f}). Measured: final reward {diff:+.3f} vs "
                   f"on-policy (2 x pooled seed SD = {2 * pooled:.3f}: {word}), wall time "
                   f"x{ratio:.2f}; {at_time}. Done-when {'met' if ok else 'NOT met'}.")
    head = ("| spg | num_iterations | arm | seeds | train() wall s | s/step measured | "
            "s/step predicted | final reward | reward at on-policy's wall time | unstable |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(rows)
    command = "python benchmarks/refresh_recommendation.py" + (" --quick" if args.quick else "")
    machine = (f"{platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores "
               f"(shared), torch {torch.__version__} threads {torch.get_num_threads()} per run, "
               f"Python {platform.python_version()}")
    text = "\n".join([
        "# recommend-refresh on the built-in task: recommendation vs on-policy, real runs", "",
        f"Command: `nice -n 10 {command}`  ", f"Machine: {machine}; built-in task "
        f"({task.n_parameters} parameters, base success {task.base_success:.3f}).", "",
        f"AdamW lr {args.learning_rate:g}, {args.steps} steps per run, seeds "
        f"{list(args.run_seeds)}; final reward = mean of the last {args.last_n} logged rewards "
        "(carried forward); wall time = `trainer.train()` only (model load excluded); "
        "s/step predicted = the pilot's `RefreshTiming.step_seconds`; reward at on-policy's "
        "wall time = the final-reward window ending at the step each run had reached after "
        "the on-policy arm's mean `train()` time (uniform step time assumed).", "",
        f"Pilot: {pilot.cost_steps} steps, {pilot.cost_seconds:.0f} s; "
        f"{timing.seconds_per_step:.3f} s per on-policy step, generation "
        f"{timing.seconds_per_generation:.3f} s "
        f"({timing.seconds_per_generation / timing.seconds_per_step:.0%}), fixed cost per "
        f"generate call {timing.generation_overhead if timing.generation_overhead is None else round(timing.generation_overhead, 4)} s.",  # noqa: E501
        "", "## recommend_refresh(pilot, learning_rate=...).explain()", "", "```",
        rec.explain(), "```", "", "## Real runs", "", table, "",
        f"**Verdict** (same reward within noise = |difference| < 2 x pooled seed SD): {verdict}",
        ""])
    print(table + "\n\n" + verdict, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

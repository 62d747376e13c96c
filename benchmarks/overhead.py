"""Overhead of StableRegionSampler (per trial) and TrajectoryPruner (per report).

Targets (issue 5): sampler <= 5 ms per trial and pruner <= 2 ms per report (medians), and how
both grow with the number of finished trials (100, 1,000, 10,000; InMemory studies built with
``add_trials``). The sampler's own cost is measured against the same study with the base
sampler alone; the model is the real `advisor.stability.StabilityModel` of the reference bandit.

Run: python benchmarks/overhead.py            (writes benchmarks/results/overhead.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from advisor import bandit
from advisor.pruner import TrajectoryPruner
from advisor.sampler import StableRegionSampler
from advisor.stability import StabilityModel


@dataclasses.dataclass
class Args:
    sizes: str = "100,1000,10000"
    """numbers of finished trials in the study (comma-separated)"""
    n_sampler_trials: int = 15
    """timed trials per size (median reported)"""
    n_tpe_trials: int = 3
    """timed trials with the TPE base (slow at 10k trials; context only)"""
    n_steps: int = 60
    """reports per pruned trial (and intermediate values per finished trial)"""
    seed: int = 0
    long_steps: str = "100,1000,5000"
    """reports per trial for the pruner's growth with trial length (comma-separated)"""
    out: str = "benchmarks/results/overhead.md"


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default)
    return Args(**vars(parser.parse_args()))


SPACE = {"momentum": FloatDistribution(0.0, 0.9), "steps_per_generation": IntDistribution(1, 8),
         "learning_rate": FloatDistribution(1e-3, 1e2, log=True)}


def make_model() -> StabilityModel:
    k, kc, ko = bandit.jacobian_stiffness(bandit.BanditProblem.reference())
    return StabilityModel(SimpleNamespace(stiffness=k, stiffness_current=kc,
                                          stiffness_sampler=ko, std_error=0.02 * k))


class ClosedFormModel:
    """A free model (eta* = 2 (1 - mu) / K_ref): isolates the wrapper's own cost."""

    def assess_many(self, p: dict, *, details: bool = False) -> dict:
        lr = np.asarray(p["learning_rate"], dtype=float)
        mu = np.broadcast_to(np.asarray(p.get("momentum", 0.0), dtype=float), lr.shape)
        top = 2.0 * (1 - mu) / np.broadcast_to(
            np.asarray(p.get("steps_per_generation", 1), dtype=float), lr.shape)
        return {"max_learning_rate": top, "probability": (lr < top).astype(float),
                "damping_ratio": (1 - mu) / (2 * np.sqrt(lr)), "time_constant": (1 - mu) / lr,
                "regime": np.full(lr.shape, "monotone", dtype=object)}

    def assess(self, p: dict) -> SimpleNamespace:
        out = self.assess_many({k: np.atleast_1d(v) for k, v in p.items()})
        return SimpleNamespace(**{k: v[0] for k, v in out.items()})


def objective(trial: optuna.Trial) -> float:
    mu = trial.suggest_float("momentum", 0.0, 0.9)
    trial.suggest_int("steps_per_generation", 1, 8)
    return trial.suggest_float("learning_rate", 1e-3, 1e2, log=True) * (1 - mu)


def finished_trials(n: int, n_steps: int, rng: np.random.Generator) -> list:
    """n finished trials with the sampler's user attributes and a reward curve each."""
    out = []
    t = np.arange(n_steps)
    for _ in range(n):
        mu, spg = float(rng.uniform(0, 0.9)), int(rng.integers(1, 9))
        u = float(rng.uniform())
        lr_max = 2.0 * (1 - mu) / spg
        lr = 1e-3 * (lr_max / 1e-3) ** u
        plateau, rate = rng.uniform(0.6, 0.85), rng.uniform(0.01, 0.2)
        curve = plateau - (plateau - 0.5) * np.exp(-rate * t) + 0.01 * rng.normal(size=n_steps)
        collapsed = bool(u > 0.9 and rng.random() < 0.5)  # 5%, near the edge (see below)
        out.append(optuna.trial.create_trial(
            params={"momentum": mu, "steps_per_generation": spg, "learning_rate": lr},
            distributions=SPACE, value=float(curve.mean()),
            intermediate_values={int(s): float(v) for s, v in zip(t, curve, strict=True)},
            user_attrs={"advisor:lr_fraction": u, "advisor:lr_max_model": lr_max,
                        "advisor:collapsed": collapsed}))
    return out


def time_trials(study: optuna.Study, n: int) -> float:
    """Median wall time (ms) of one ask -> suggest -> tell cycle."""
    times = []
    for _ in range(n):
        t0 = time.thread_time()
        trial = study.ask()
        value = objective(trial)
        study.tell(trial, value)
        times.append(time.thread_time() - t0)
    return 1e3 * statistics.median(times)


def time_reports(study: optuna.Study, n_steps: int,
                 pruner: TrajectoryPruner) -> tuple[float, float]:
    """Median and max time (ms) of should_prune() over one trial's reports."""
    study.pruner = pruner
    trial = study.ask()
    times = []
    for s in range(n_steps):
        trial.report(0.5 + 0.3 * (1 - math.exp(-0.05 * s)), s)
        t0 = time.thread_time()
        trial.should_prune()
        times.append(time.thread_time() - t0)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return 1e3 * statistics.median(times), 1e3 * max(times)


def time_long_trial(n_steps: int, storage: str | None, seed: int) -> tuple[float, float]:
    """Median and mean time (ms) of ``should_prune()`` per report over one ``n_steps`` trial.

    The trial also rewrites the whole ``"advisor:health"`` dict at every step (the worst case:
    `advisor.pilot.trial_callback` writes it less often past 256 steps); a finished reference
    trial of the same length is in the study. The mean includes the fits (every few reports).
    """
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize", storage=storage,
                                pruner=TrajectoryPruner(n_warmup_steps=10, n_steps=n_steps))
    t = np.arange(n_steps)

    def curve(rate: float) -> np.ndarray:
        return 0.9 - 0.5 * np.exp(-rate * t) + 0.04 * rng.normal(size=n_steps)

    ref = curve(5.0 / n_steps)
    study.add_trial(optuna.trial.create_trial(
        value=float(ref[-1]), intermediate_values={int(s): float(v) for s, v in zip(t, ref,
                                                                                    strict=True)}))
    trial = study.ask()
    health: dict[str, list] = {"step": [], "grad_norm": [], "entropy": [], "kl": []}
    times = []
    for s, v in zip(t, curve(8.0 / n_steps), strict=True):
        for key, value in (("step", int(s)), ("grad_norm", 1.0 + 0.1 * rng.random()),
                           ("entropy", 0.5), ("kl", 0.01)):
            health[key].append(value)
        trial.set_user_attr("advisor:health", health)
        trial.report(float(v), int(s))
        t0 = time.thread_time()
        trial.should_prune()
        times.append(time.thread_time() - t0)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return 1e3 * statistics.median(times), 1e3 * statistics.fmean(times)


if __name__ == "__main__":
    args = parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    model = make_model()
    rows = []
    # ---------------------------------------------------------------- one study per size
    for n in (int(x) for x in args.sizes.split(",")):
        trials = finished_trials(n, args.n_steps, rng)
        timing = {}
        for label, make, k in [
            ("random", lambda: optuna.samplers.RandomSampler(seed=args.seed),
             args.n_sampler_trials),
            ("stable(random)", lambda: StableRegionSampler(
                model=model, search_space=SPACE, seed=args.seed,
                base_sampler=optuna.samplers.RandomSampler(seed=args.seed)),
             args.n_sampler_trials),
            ("stable(random), free model", lambda: StableRegionSampler(
                model=ClosedFormModel(), search_space=SPACE, seed=args.seed,
                base_sampler=optuna.samplers.RandomSampler(seed=args.seed)),
             args.n_sampler_trials),
            ("tpe", lambda: optuna.samplers.TPESampler(seed=args.seed), args.n_tpe_trials),
            ("stable(tpe)", lambda: StableRegionSampler(model=model, search_space=SPACE,
                                                        seed=args.seed), args.n_tpe_trials),
        ]:
            study = optuna.create_study(direction="maximize", sampler=make())
            study.add_trials(trials)
            timing[label] = time_trials(study, k)
        study = optuna.create_study(direction="maximize")
        study.add_trials(trials)
        p5 = time_reports(study, args.n_steps, TrajectoryPruner(n_warmup_steps=10))
        p1 = time_reports(study, args.n_steps,
                          TrajectoryPruner(n_warmup_steps=10, interval_steps=1))
        pq = time_reports(study, args.n_steps,
                          TrajectoryPruner(n_warmup_steps=10, percentile=25.0))
        rows.append((n, timing, p5, p1, pq))
        print(n, timing, p5, p1, pq, file=sys.stderr)

    # ---------------------------------------------------------------- table
    lines = [
        "# Plugin overhead (`python benchmarks/overhead.py`)",
        "",
        "Medians of thread CPU time in ms (the 2-core box is shared, so CPU time rather than "
        "wall time; InMemory storage; the model is the real "
        "StabilityModel of the reference bandit; `stable(x)` = StableRegionSampler around x).",
        "Sampler: one ask -> 3 suggests -> tell cycle. Own cost = stable(random) - random; "
        "'wrapper only' uses a free closed-form model, so the rest of 'own cost' is the "
        "StabilityModel's one vectorised assess_many call per trial.",
        "Pruner: `should_prune()` per report over a 60-step trial (median, max); default fits "
        "every 5th report after the warm-up, `interval_steps=1` fits at every report, "
        "`percentile=25` scans every completed trial.",
        "",
        "| finished trials | random | stable(random) | own cost | wrapper only | tpe | "
        "stable(tpe) | pruner (default) | pruner (fit every report) | pruner (percentile=25) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, t, p5, p1, pq in rows:
        own = t["stable(random)"] - t["random"]
        lines.append(
            f"| {n:,} | {t['random']:.2f} | {t['stable(random)']:.2f} | {own:.2f} | "
            f"{t['stable(random), free model'] - t['random']:.2f} | "
            f"{t['tpe']:.1f} | {t['stable(tpe)']:.1f} | {p5[0]:.2f} (max {p5[1]:.1f}) | "
            f"{p1[0]:.2f} (max {p1[1]:.1f}) | {pq[0]:.2f} (max {pq[1]:.1f}) |")
    # ---------------------------------------------------------------- pruner vs trial length
    import tempfile

    lines += ["", "Pruner vs trial length: `should_prune()` per report over one trial of N "
              "reports that also rewrites the whole health attribute at every step (the worst "
              "case; `advisor.pilot.trial_callback` writes it less often past 256 steps), "
              "default settings, a finished reference trial of the same length. Median and "
              "mean (the mean includes the periodic fits) in ms of thread CPU time.", "",
              "| reports per trial | InMemory: median | InMemory: mean | SQLite: median | "
              "SQLite: mean |", "|---:|---:|---:|---:|---:|"]
    for n_long in (int(x) for x in args.long_steps.split(",")):
        mem = time_long_trial(n_long, None, args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            sql = time_long_trial(n_long, f"sqlite:///{tmp}/overhead.db", args.seed)
        print("long", n_long, mem, sql, file=sys.stderr)
        lines.append(f"| {n_long:,} | {mem[0]:.2f} | {mem[1]:.2f} | {sql[0]:.2f} | "
                     f"{sql[1]:.2f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)

"""How fast the stability model judges configurations (Core issue: 10^6 configs in under a second).

Times `StabilityModel.assess_many` on random GRPOConfig-named knob arrays, with the reference
bandit's measured stiffness and a calibrated edge (the layers a real pilot gives),
`max_learning_rate` over a (momentum, refresh interval) grid, and the Optuna sampler's per-trial
call: `assess_many(details=True)` on 82 learning rates sharing ONE knob combination, once with a
new (momentum, K_ref) every call (the exact linear edge is computed) and once repeating
combinations already seen (the model's per-combination cache answers).

    python benchmarks/model_speed.py [--n-configs 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass

import numpy as np

from advisor import bandit
from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel
from advisor.stiffness import PilotCurve
from advisor.stiffness import estimate_stiffness


@dataclass
class Args:
    n_configs: int = 1_000_000
    """configurations judged in one assess_many call"""
    repeats: int = 3
    """timed repeats (best and median printed)"""
    seed: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-configs", type=int, default=Args.n_configs)
    parser.add_argument("--repeats", type=int, default=Args.repeats)
    a = Args(**{k: v for k, v in vars(parser.parse_args()).items()})
    rng = np.random.default_rng(a.seed)

    # ---- a measured model: stiffness from simulated pilot curves + an edge as a pilot gives
    problem = bandit.BanditProblem.reference()
    run = bandit.simulate(problem, learning_rate=[0.05, 0.1], n_steps=600)
    curves = [PilotCurve(rewards=run.reward_used[i], learning_rate=lr)
              for i, lr in enumerate((0.05, 0.1))]
    model = StabilityModel(estimate_stiffness(curves), edge=EdgeEstimate(
        rate=0.03, low=0.025, high=0.035, samples_per_step=128, horizon_steps=150,
        optimizer="sgd"), defaults={"optim": "sgd", "per_device_train_batch_size": 128})

    # ---- random configurations, GRPOConfig names
    n = a.n_configs
    params = {"learning_rate": 10 ** rng.uniform(-5, 0, n),
              "momentum": rng.uniform(0.0, 0.95, n),
              "steps_per_generation": rng.integers(1, 17, n),
              "num_generations": rng.choice([2, 4, 8, 16], n),
              "per_device_train_batch_size": rng.choice([64, 128, 256], n)}

    times = []
    for _ in range(a.repeats):
        start = time.perf_counter()
        out = model.assess_many(params)
        times.append(time.perf_counter() - start)
    stable = np.asarray(out["stable"], dtype=bool)
    grid_t = []
    mus, krefs = np.meshgrid(np.linspace(0, 0.95, 100), np.arange(1, 33))
    for _ in range(a.repeats):
        model._rate_cache.clear()  # time the exact edges, not the per-combination cache
        start = time.perf_counter()
        model.max_learning_rate(momentum=mus.ravel(), refresh_interval=krefs.ravel())
        grid_t.append(time.perf_counter() - start)

    # ---- the sampler's call: 82 rows, one knob combination per trial
    n_trial, n_rows = 200, 82
    trial_mu = rng.uniform(0.0, 0.95, n_trial)
    trial_spg = rng.integers(1, 33, n_trial)
    rows = {"learning_rate": np.geomspace(1e-4, 10, n_rows), "num_generations": 8}
    per_trial = {}
    for label in ("new combination", "seen combination"):
        start = time.perf_counter()
        for mu, spg in zip(trial_mu, trial_spg, strict=True):
            model.assess_many({**rows, "momentum": np.full(n_rows, mu),
                               "steps_per_generation": np.full(n_rows, spg)}, details=True)
        per_trial[label] = (time.perf_counter() - start) / n_trial

    print(f"machine: {platform.platform()} | {os.cpu_count()} cores | numpy {np.__version__}")
    print("| call | configs | best s | median s |")
    print("|---|---:|---:|---:|")
    print(f"| assess_many | {n:,} | {min(times):.3f} | {np.median(times):.3f} |")
    print(f"| max_learning_rate grid | {mus.size:,} | {min(grid_t):.3f} "
          f"| {np.median(grid_t):.3f} |")
    for label, t in per_trial.items():
        print(f"| sampler trial, details=True ({label}, mean of {n_trial}) | {n_rows} "
              f"| {t * 1e3:.2f} ms | |")
    print(f"predicted stable: {stable.mean():.1%} of the random configurations")


if __name__ == "__main__":
    main()

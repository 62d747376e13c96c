"""How fast the stability model judges configurations (Core issue: 10^6 configs in under a second).

Times every vectorised entry point of `StabilityModel` at ``--n-configs`` DISTINCT random
configurations (momentum uniform in [0, 0.95], refresh interval 1..32, learning rate log-uniform
in [1e-3, 10]) and at as many configurations sharing few knob pairs (8 momenta x 4 intervals),
for a model built from the reference bandit's Jacobian stiffness (K = 0.5, K_c = 1.25), with and
without a calibrated `EdgeEstimate`. Every timed call uses a FRESH model (no cached exact edges or
momentum tables: what one call on a new model costs); median of ``--repeats``. Then the Optuna
sampler's per-trial call (`assess_many(details=True)` on 82 learning rates sharing one knob
combination), new and seen combinations.

    nice -n 10 python benchmarks/model_speed.py [--n-configs 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from advisor import bandit
from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel


@dataclass
class Args:
    n_configs: int = 1_000_000
    """configurations per timed call"""
    repeats: int = 3
    """timed repeats (median printed), each on a fresh model"""
    seed: int = 0
    only: str = ""
    """comma-separated row-label substrings to run (default: all)"""


EDGE = EdgeEstimate(rate=0.03, low=0.025, high=0.035, samples_per_step=128, horizon_steps=150,
                    optimizer="sgd")


def _timed(make: Callable[[], StabilityModel], call: Callable[[StabilityModel], Any],
           repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        model = make()
        start = time.perf_counter()
        call(model)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-configs", type=int, default=Args.n_configs)
    parser.add_argument("--repeats", type=int, default=Args.repeats)
    parser.add_argument("--only", default=Args.only)
    a = Args(**{k: v for k, v in vars(parser.parse_args()).items()})
    rng = np.random.default_rng(a.seed)
    warnings.simplefilter("ignore")

    k, kc, ko = bandit.jacobian_stiffness(bandit.BanditProblem.reference())
    est = SimpleNamespace(stiffness=k, stiffness_current=kc, stiffness_sampler=ko,
                          std_error=0.01, optimizer="sgd")
    models = {"": lambda: StabilityModel(est),
              "+edge": lambda: StabilityModel(est, edge=EDGE)}

    n = a.n_configs
    distinct = dict(momentum=rng.uniform(0.0, 0.95, n), refresh_interval=rng.integers(1, 33, n),
                    learning_rate=10 ** rng.uniform(-3, 1, n))
    few = dict(momentum=rng.choice(np.linspace(0.0, 0.9, 8), n),
               refresh_interval=rng.choice([1, 2, 4, 8], n),
               learning_rate=10 ** rng.uniform(-3, 1, n))
    rows: list[tuple[str, Callable[[StabilityModel], Any], str]] = []
    for label, x in (("distinct", distinct), ("few pairs", few)):
        cond = {"momentum": x["momentum"], "refresh_interval": x["refresh_interval"]}
        params = {"learning_rate": x["learning_rate"], "momentum": x["momentum"],
                  "steps_per_generation": x["refresh_interval"], "num_generations": 8,
                  "per_device_train_batch_size": 128}
        for scheme in ("piecewise", "sliding"):
            for method in ("auto", "theory", "exact", "calibrated", "closed_form"):
                rows.append((f"max_learning_rate {scheme} method={method} ({label})",
                             lambda m, c=cond, s=scheme, me=method: m.max_learning_rate(
                                 **c, refresh_scheme=s, method=me),
                             "+edge" if method in ("calibrated", "auto") else ""))
            rows.append((f"is_stable {scheme} ({label})",
                         lambda m, c=cond, s=scheme, lr=x["learning_rate"]: m.is_stable(
                             lr, **c, refresh_scheme=s), "+edge"))
        rows.append((f"assess_many ({label})", lambda m, p=params: m.assess_many(p), "+edge"))
        rows.append((f"max_refresh_interval, K_ref 1..64 ({label})",
                     lambda m, p=params: m.max_refresh_interval(p), "+edge"))
        rows.append((f"assess_many details=True: margin, regime, damping_ratio ({label})",
                     lambda m, p=params: m.assess_many(p, details=True), "+edge"))
    only = [s for s in a.only.split(",") if s]
    print(f"machine: {platform.platform()} | {os.cpu_count()} cores | numpy {np.__version__}")
    print(f"configs per call: {n:,}; fresh model per call; median of {a.repeats}")
    print("| call | model | median s | best s |")
    print("|---|---|---:|---:|")
    for label, call, model_key in rows:
        if only and not any(s in label for s in only):
            continue
        t = _timed(models[model_key], call, a.repeats)
        print(f"| {label} | K{model_key} | {np.median(t):.3f} | {min(t):.3f} |", flush=True)

    if not only or any("sampler" in s or "refresh" in s for s in only):
        model = models["+edge"]()
        start = time.perf_counter()
        for mu, g in zip(rng.uniform(0, 0.95, 100), rng.integers(1, 33, 100), strict=True):
            model.max_refresh_interval({"learning_rate": 0.05, "momentum": mu,
                                        "steps_per_generation": g})
        print(f"| max_refresh_interval (one config, K_ref 1..64; mean of 100) | K+edge "
              f"| {(time.perf_counter() - start) / 100:.4f} | |")
        n_trial, n_rows = 200, 82
        trial = {"learning_rate": np.geomspace(1e-4, 10, n_rows), "num_generations": 8}
        for label in ("new combination", "seen combination"):
            start = time.perf_counter()
            for mu, spg in zip(np.linspace(0, 0.95, n_trial), 1 + np.arange(n_trial) % 32,
                               strict=True):
                model.assess_many({**trial, "momentum": np.full(n_rows, mu),
                                   "steps_per_generation": np.full(n_rows, spg)}, details=True)
            print(f"| sampler trial, details=True ({label}, mean of {n_trial}, {n_rows} rows) "
                  f"| K+edge | {(time.perf_counter() - start) / n_trial:.4f} | |")


if __name__ == "__main__":
    main()

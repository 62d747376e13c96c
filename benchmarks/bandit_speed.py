"""How fast the exact bandit reduction runs as a sweep objective (advisor.bandit).

Times, as the median of `repeats` runs: the (learning rate, lag) grid of `n_configs` configurations
x `n_steps` steps with the infinite-group expected update (piecewise refresh with mixed K_ref,
sliding lag, and one shared K_ref), the regime classification of that grid, a finite-group batch
(G completions sampled per refresh), and the one-off oracles (fixed point + Jacobian stiffness, an
empirical threshold scan). Target from the prototype (bandit-findings.md section 8): 1952 x 4000
grid in 2.2 s on 2 cores.

Run: python benchmarks/bandit_speed.py [--n-configs 2000] [--n-steps 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from advisor import bandit


T = TypeVar("T")

@dataclass(frozen=True)
class Args:
    n_configs: int = 2000
    """configurations in the grid (learning rate x lag)"""
    n_steps: int = 4000
    """optimizer steps per configuration"""
    momentum: float = 0.8
    """heavy-ball momentum of every configuration"""
    finite_configs: int = 2000
    """configurations (seeds) in the finite-group batch"""
    finite_steps: int = 300
    """steps of the finite-group batch"""
    group_sizes: tuple[int, ...] = (16, 64)
    """num_generations of the finite-group batches"""
    repeats: int = 3
    """timing repeats (the median is reported)"""


def timed(fn: Callable[[], T], repeats: int) -> tuple[tuple[float, float], T]:
    """(best, median) wall-clock seconds over `repeats` calls, and the last result. The best is
    the less noisy figure on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return (min(times), float(np.median(times))), out


def main(args: Args) -> list[tuple[str, tuple[float, float], str]]:
    problem = bandit.BanditProblem.reference()
    n_lags = 32
    etas = np.geomspace(0.01, 10.0, max(1, -(-args.n_configs // n_lags)))
    eta, lag = (a.ravel() for a in np.meshgrid(etas, np.arange(1, n_lags + 1)))
    eta, lag = eta[: args.n_configs], lag[: args.n_configs]
    grid = dict(learning_rate=eta, momentum=args.momentum, n_steps=args.n_steps)
    rows: list[tuple[str, tuple[float, float], str]] = []

    # ------------------------------------------------------------------------------------------
    # INFINITE GROUP: the (eta, lag) grid
    # ------------------------------------------------------------------------------------------
    sec, run = timed(lambda: bandit.simulate(problem, refresh_interval=lag, **grid), args.repeats)
    size = f"{eta.size} x {args.n_steps}"
    rows.append(("grid, piecewise K_ref 1-32, G=inf", sec, size))
    sec, _ = timed(lambda: bandit.simulate(problem, refresh_interval=lag - 1,
                                           refresh_scheme="sliding", **grid), args.repeats)
    rows.append(("grid, sliding d 0-31, G=inf", sec, size))
    sec, _ = timed(lambda: bandit.simulate(problem, refresh_interval=4, **grid), args.repeats)
    rows.append(("grid, one K_ref = 4, G=inf", sec, size))
    sec, regimes = timed(run.regimes, args.repeats)
    rows.append(("classify the piecewise grid", sec, size))
    counts = {r.value: int(sum(x is r for x in regimes)) for r in set(regimes)}

    # ------------------------------------------------------------------------------------------
    # FINITE GROUP: G completions per refresh, one run per seed
    # ------------------------------------------------------------------------------------------
    for group in args.group_sizes:
        sec, _ = timed(lambda g=group: bandit.simulate(
            problem, learning_rate=np.full(args.finite_configs, 0.3), momentum=args.momentum,
            num_generations=g, n_steps=args.finite_steps, seed=0), args.repeats)
        rows.append((f"finite G = {group}, K_ref = 1", sec,
                     f"{args.finite_configs} x {args.finite_steps}"))

    # ------------------------------------------------------------------------------------------
    # ORACLES
    # ------------------------------------------------------------------------------------------
    def oracle() -> tuple[float, float, float]:
        bandit._solve_fixed_point.cache_clear()  # time the solve, not the cache
        return bandit.jacobian_stiffness(problem)

    sec, _ = timed(oracle, args.repeats)
    rows.append(("fixed point + Jacobian (K, K_c, K_o)", sec, "1 problem"))
    sec, _ = timed(lambda: bandit.empirical_threshold(
        problem, momentum=args.momentum, refresh_interval=[1, 2, 4, 8, 16, 32],
        n_steps=args.n_steps), 1)
    rows.append(("empirical threshold, 6 lags", sec, "lr scan + 10 bisections"))

    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable) | "
          f"numpy {np.__version__} | python {platform.python_version()}")
    print(f"\n| {'piece':38s} | {'best s':>7s} | {'median s':>8s} | {'size':>24s} | "
          f"{'us/config-step':>14s} |")
    print(f"|{'-' * 40}|{'-' * 9}|{'-' * 10}|{'-' * 26}|{'-' * 16}|")
    for name, (best, median), what in rows:
        per = ""
        if " x " in what:
            a, b = (int(x) for x in what.split(" x "))
            per = f"{best / (a * b) * 1e6:.3f}"
        print(f"| {name:38s} | {best:7.3f} | {median:8.3f} | {what:>24s} | {per:>14s} |")
    print(f"\nregimes of the piecewise grid (mu = {args.momentum}): {counts}; "
          f"diverged (NaN): {int(run.diverged.sum())}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-configs", type=int, default=Args.n_configs)
    parser.add_argument("--n-steps", type=int, default=Args.n_steps)
    parser.add_argument("--finite-configs", type=int, default=Args.finite_configs)
    parser.add_argument("--finite-steps", type=int, default=Args.finite_steps)
    parser.add_argument("--repeats", type=int, default=Args.repeats)
    ns = parser.parse_args()
    main(Args(n_configs=ns.n_configs, n_steps=ns.n_steps, finite_configs=ns.finite_configs,
              finite_steps=ns.finite_steps, repeats=ns.repeats))

"""How well `fit_trajectory` describes and extrapolates simulated reward curves.

Curves are the exact heavy-ball map from rest (advisor.dynamics.trajectory, model="heavy_ball")
observed through binomial noise: the logged reward is the mean of `samples_per_step` Bernoulli
rewards, so its sd is sqrt(p(1-p)/n) (0.05 / 0.035 / 0.025 at p = 0.5 for n = 100 / 200 / 400).
Families: mu = 0 (single exponential, 3-10 e-folds in 200 steps) and heavy ball mu = 0.9 with
damping ratio 0.9-1.5 (slow inertial start, 300 steps). Prints per cell: median R^2, plateau
error, prediction of the final reward from a 25% prefix (error, 90%-interval coverage of the true
mean and of the noisy logged value), and which model AICc picks.

Run: python benchmarks/fit_quality.py [--n-curves 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from advisor.dynamics import fit_trajectory
from advisor.dynamics import relaxation_rate
from advisor.dynamics import trajectory


@dataclass(frozen=True)
class Args:
    n_curves: int = 100
    """curves per (family, noise) cell"""
    seed: int = 0
    """seed of the curve parameters and the noise"""
    samples: tuple[int, ...] = (100, 200, 400)
    """completions per step (binomial noise of the logged group mean)"""
    prefix: float = 0.25
    """fraction of the curve the extrapolation sees"""


# ----------------------------------------------------------------------------------------------
# CURVES
# ----------------------------------------------------------------------------------------------
def make_curve(rng: np.random.Generator, family: str, samples: int) -> dict:
    p0 = rng.uniform(0.1, 0.5)
    p_star = rng.uniform(p0 + 0.2, 0.95)
    if family == "exp":
        n, mu = 200, 0.0
        rate = rng.uniform(3, 10) / n
    else:
        n, mu = 300, 0.9
        zeta = rng.uniform(0.9, 1.5)
        rate = (1 - mu) / (4 * zeta**2)  # zeta = sqrt(1 - mu) / (2 sqrt(x))
    k = np.arange(n)
    truth = trajectory(k, plateau=p_star, start=p0, rate=rate, momentum=mu, model="heavy_ball")
    observed = rng.binomial(samples, np.clip(truth, 0, 1)) / samples
    return dict(truth=truth, observed=observed, p_star=p_star, rate=rate, mu=mu)


# ----------------------------------------------------------------------------------------------
# METRICS
# ----------------------------------------------------------------------------------------------
ALL = ("exponential", "oscillator", "two_timescale")
# e-folds of the slow mode inside the prefix
BINS = ((0.0, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, np.inf))


def evaluate(curve: dict, prefix: float, models: tuple[str, ...]) -> dict:
    y, truth = curve["observed"], curve["truth"]
    n = y.size
    full = fit_trajectory(y, models=models)
    m = int(round(prefix * n))
    part = fit_trajectory(y[:m], models=models)
    mean, low, high = part.predict([n - 1], interval=0.9)
    ss_tot = np.sum((y - y.mean()) ** 2)
    return dict(
        r2=full.r_squared, ceiling=1 - np.sum((y - truth) ** 2) / ss_tot,
        plateau_err=abs(full.plateau - curve["p_star"]), non_exp=full.model != "exponential",
        d_aicc=full.candidates.get("exponential", np.nan) - full.aicc,
        efolds=relaxation_rate(curve["rate"], curve["mu"]) * m,
        pred_err=abs(mean[0] - truth[-1]), cover=low[0] <= truth[-1] <= high[0],
        cover_obs=low[0] <= y[-1] <= high[0], width=high[0] - low[0])


def timing(rng: np.random.Generator) -> dict:
    t = np.arange(100)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    out = {}
    for name, models in (("exponential", ("exponential",)), ("all", ALL)):
        fit_trajectory(y, models=models).predict([400])
        t0 = time.perf_counter()
        for _ in range(20):
            fit_trajectory(y, models=models)
        t1 = time.perf_counter()
        for _ in range(20):
            fit_trajectory(y, models=models).predict([400])
        out[name] = ((t1 - t0) / 20 * 1e3, (time.perf_counter() - t1) / 20 * 1e3)
    return out


def main(args: Args) -> dict:
    rng = np.random.default_rng(args.seed)
    rows = []
    for family in ("exp", "hb0.9"):
        for samples in args.samples:
            curves = [make_curve(rng, family, samples) for _ in range(args.n_curves)]
            sd = float(np.median([np.std(c["observed"] - c["truth"]) for c in curves]))
            for label, models in (("all", ALL), ("exp", ("exponential",))):
                for c in curves:
                    rows.append(dict(family=family, samples=samples, sd=sd, models=label,
                                     **evaluate(c, args.prefix, models)))
    df = pd.DataFrame(rows)
    keys = ["family", "samples", "sd", "models"]
    print("Full curves (plateau error |dP|; nonExp: share where AICc picks a non-exponential "
          "model; dAICc: median AICc(exponential) - AICc(chosen))")
    full = df.groupby(keys, sort=False).agg(
        medR2=("r2", "median"), ceilR2=("ceiling", "median"), dP=("plateau_err", "median"),
        P_le_01=("plateau_err", lambda s: np.mean(s <= 0.01)), nonExp=("non_exp", "mean"),
        dAICc=("d_aicc", "median"))
    print(full.round(4).to_string())
    df["prefix_efolds"] = pd.cut(df["efolds"], [b[0] for b in BINS] + [np.inf], right=False)
    print(f"\nFinal reward predicted from a {args.prefix:.0%} prefix (cov90: 90% interval covers "
          "the true mean; covObs: covers the noisy logged value)")
    for by in (keys, keys[:1] + ["models", "prefix_efolds"]):
        pre = df.groupby(by, sort=False, observed=True).agg(
            n=("pred_err", "size"), dpred=("pred_err", "median"),
            le_05=("pred_err", lambda s: np.mean(s <= 0.05)), cov90=("cover", "mean"),
            covObs=("cover_obs", "mean"), width=("width", "median"))
        print(pre.round(3).to_string(), end="\n\n")
    ms = timing(rng)
    for name, (fit_ms, pred_ms) in ms.items():
        print(f"time, 100 points, models={name}: fit {fit_ms:.1f} ms, "
              f"fit+predict {pred_ms:.1f} ms")
    return dict(full=full, frame=df, timing_ms=ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-curves", type=int, default=Args.n_curves)
    parser.add_argument("--seed", type=int, default=Args.seed)
    ns = parser.parse_args()
    main(Args(n_curves=ns.n_curves, seed=ns.seed))

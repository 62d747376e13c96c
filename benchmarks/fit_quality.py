"""How well `fit_trajectory` describes and extrapolates simulated reward curves.

Curves are the exact heavy-ball map from rest (advisor.dynamics.trajectory, model="heavy_ball")
observed through binomial noise: the logged reward is the mean of `samples` Bernoulli rewards,
so its sd is sqrt(p(1-p)/samples). Families:

* ``exp``: mu = 0 (single exponential), 200 steps, 3-10 e-folds, p0 ~ U(0.1, 0.5),
  p* ~ U(p0 + 0.2, 0.95).
* ``hb0.9``: heavy ball mu = 0.9, damping ratio 0.9-1.5 (slow inertial start), 300 steps,
  same p0 and p*.
* ``trl``: shaped like the 67 stable on-policy (K_ref = 1) real TRL GRPO runs of
  /work/shared/research/real-trl-findings.md (their fitted single-exponential parameters,
  `real-trl/fit_quality.csv`): 150 steps, p0 ~ U(0.30, 0.40) and p* ~ U(0.85, 0.97) (the
  interquartile ranges 0.33-0.36 and 0.89-0.95, widened a little), 1-3.9 e-folds over the run
  (log-uniform; the interquartile range of 150/tau), mu = 0, 128 samples per step.

Noise cells (samples per logged point): 100 / 200 / 400 (sd 0.05 / 0.035 / 0.025 at p = 0.5),
plus the two REALISTIC cells of the real runs: 128 = one optimizer step's completions at
K_ref = 1 (16 prompts x 8 generations; binomial sd ~0.04 as measured there, where the median
single-exponential R^2 was 0.87) and 1024 = 8x more per logged point, the noise of a K_ref = 8
logged point (real median R^2 0.985; here with the family's step count, not 19 points).

Fit settings: ``pruner`` = what `TrajectoryPruner` fits by default (the trial is heavy-ball
SGD with the family's momentum: the exponential at mu = 0, the known-momentum heavy_ball
model at mu = 0.9); ``pruner+K`` = the same fit as `TrajectoryPruner(stiffness=...)` makes
it: with the log-normal rate prior of a pilot's stiffness, centred at a SIMULATED pilot
estimate of the curve's dimensionless rate, truth x exp(N(0, s)) with s = sqrt(pilot_error^2
+ s_model^2) (pilot_error 0.10 = the relative standard error of K; s_model 0.23, the scatter
of real SGD runs' rates about lr K / (1 - mu), `advisor.pruner._MODEL_SCATTER`), and log sd s
(drawn from a separate generator, so the curves are those of the other settings);
``default`` = `fit_trajectory` defaults without momentum; ``default+mu`` = defaults with the
momentum given (heavy_ball joins the candidates); ``exp`` = exponential.

Prints per cell: median R^2 against the data, the noise ceiling (R^2 of the TRUE curve against
the data: no fit can beat it), R^2 of the fit against the true mean curve, plateau error, and
the final reward predicted from a 25% prefix (error of `predict()`'s point and of the
least-squares curve, share within 0.05, 90%-interval coverage of the true mean and of the noisy
logged value). Then a PASS/FAIL line per cell for the `pruner` and `pruner+K`
settings against the targets: median prediction error <= 0.05, cov90 >= 0.85, median R^2 within
0.01 of the ceiling, median R^2 against the truth >= 0.95, median plateau error <= 0.01.

Run: python benchmarks/fit_quality.py [--n-curves 100] [--seed 0] [--samples 100 128 ...]
     [--n-timing 20] [--pilot-error 0.10]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from advisor import _trajectory_models as _models
from advisor import pruner
from advisor.dynamics import fit_trajectory
from advisor.dynamics import relaxation_rate
from advisor.dynamics import trajectory


@dataclass(frozen=True)
class Args:
    n_curves: int = 100
    """curves per (family, noise) cell"""
    seed: int = 0
    """seed of the curve parameters and the noise"""
    samples: tuple[int, ...] = (100, 128, 200, 400, 1024)
    """completions per logged point (binomial noise of the logged group mean)"""
    prefix: float = 0.25
    """fraction of the curve the extrapolation sees"""
    n_timing: int = 20
    """repetitions of each timed fit"""
    pilot_error: float = 0.10
    """relative standard error of the simulated pilot's K (setting ``pruner+K``)"""


# ----------------------------------------------------------------------------------------------
# CURVES
# ----------------------------------------------------------------------------------------------
def make_curve(rng: np.random.Generator, family: str, samples: int) -> dict:
    if family == "trl":
        p0, p_star = rng.uniform(0.30, 0.40), rng.uniform(0.85, 0.97)
        n, mu = 150, 0.0
        rate = float(np.exp(rng.uniform(np.log(1.0), np.log(3.9)))) / n
    else:
        p0 = rng.uniform(0.1, 0.5)
        p_star = rng.uniform(p0 + 0.2, 0.95)
    if family == "exp":
        n, mu = 200, 0.0
        rate = rng.uniform(3, 10) / n
    elif family == "hb0.9":
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
# e-folds of the slow mode inside the prefix
BINS = ((0.0, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, np.inf))
TARGET_ERR, TARGET_COV, TARGET_R2_TRUTH, TARGET_DP = 0.05, 0.85, 0.95, 0.01


def fit(y: np.ndarray, setting: str, mu: float, prior: tuple[float, float] | None = None):
    """The fit a setting makes (``pruner`` reuses the pruner's own choice and fallbacks)."""
    if setting in ("pruner", "pruner+K"):
        # the pruner's private model choice, so the table measures exactly what it fits
        return pruner._fit({"optim": "sgd", "momentum": mu}, np.arange(y.size, dtype=float), y,
                           None, prior if setting == "pruner+K" else None)
    if setting == "exp":
        return fit_trajectory(y, models=("exponential",))
    return fit_trajectory(y, momentum=mu if setting == "default+mu" else None)


def evaluate(curve: dict, prefix: float, setting: str) -> dict:
    y, truth, mu, prior = curve["observed"], curve["truth"], curve["mu"], curve.get("prior")
    n = y.size
    full = fit(y, setting, mu, prior)
    m = int(round(prefix * n))
    part = fit(y[:m], setting, mu, prior)
    mean, low, high = part.predict([n - 1], interval=0.9)
    # the least-squares curve's extrapolation (predict()'s point before the rate posterior)
    ls = _models.evaluate(part.model, part._theta, np.array([n - 1.0]), part.momentum or 0.0)
    ss_tot = np.sum((y - y.mean()) ** 2)
    fitted = full.predict(np.arange(n), n_samples=50)[0]  # the band is not needed here
    return dict(
        r2=full.r_squared, ceiling=1 - np.sum((y - truth) ** 2) / ss_tot,
        r2_truth=1 - np.sum((fitted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2),
        plateau_err=abs(full.plateau - curve["p_star"]), non_exp=full.model != "exponential",
        d_aicc=full.candidates.get("exponential", np.nan) - full.aicc,
        efolds=relaxation_rate(curve["rate"], curve["mu"]) * m,
        pred_err=abs(mean[0] - truth[-1]), ls_err=abs(ls[0] - truth[-1]),
        cover=low[0] <= truth[-1] <= high[0],
        cover_obs=low[0] <= y[-1] <= high[0], width=high[0] - low[0])


def timing(rng: np.random.Generator, reps: int) -> dict:
    t = np.arange(100)
    y = trajectory(t, plateau=0.8, start=0.3, rate=0.04) + rng.normal(0, 0.03, t.size)
    out = {}
    for name, kw in (("exponential", dict(models=("exponential",))), ("default", {}),
                     ("heavy_ball, momentum=0.9", dict(models=("heavy_ball",), momentum=0.9)),
                     ("default, momentum=0.9", dict(momentum=0.9))):
        fit_trajectory(y, **kw).predict([400])
        t0 = time.perf_counter()
        for _ in range(reps):
            fit_trajectory(y, **kw)
        t1 = time.perf_counter()
        for _ in range(reps):
            fit_trajectory(y, **kw).predict([400])
        out[name] = ((t1 - t0) / reps * 1e3, (time.perf_counter() - t1) / reps * 1e3)
    return out


def median_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 90% interval of a median (1000 resamples): how much a cell's median moves."""
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(values, size=(1000, values.size)), axis=1)
    return float(np.quantile(meds, 0.05)), float(np.quantile(meds, 0.95))


def verdict(cell: pd.Series, ci: tuple[float, float]) -> str:
    checks = [
        (cell.dpred <= TARGET_ERR,
         f"pred {cell.dpred:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]<={TARGET_ERR}"),
        (cell.cov90 >= TARGET_COV, f"cov90 {cell.cov90:.2f}>={TARGET_COV}"),
        (cell.medR2 >= cell.ceilR2 - 0.01, f"R2 {cell.medR2:.3f}~ceil {cell.ceilR2:.3f}"),
        (cell.R2truth >= TARGET_R2_TRUTH, f"R2truth {cell.R2truth:.3f}>={TARGET_R2_TRUTH}"),
        (cell.dP <= TARGET_DP, f"dP {cell.dP:.4f}<={TARGET_DP}"),
    ]
    return " ".join(("PASS " if ok else "FAIL ") + text for ok, text in checks)


def main(args: Args) -> dict:
    rng = np.random.default_rng(args.seed)
    # the simulated pilot: its own generator, so the curves are those of the other settings
    pilot_rng = np.random.default_rng([args.seed, 1])
    s_prior = float(np.hypot(args.pilot_error, pruner._MODEL_SCATTER["sgd"]))
    rows = []
    cells = [(f, s) for f in ("exp", "hb0.9") for s in args.samples] + [("trl", 128)]
    for family, samples in cells:
        curves = [make_curve(rng, family, samples) for _ in range(args.n_curves)]
        for c in curves:  # centre: the true dimensionless rate x, off by the pilot's error
            c["prior"] = (c["rate"] * float(np.exp(pilot_rng.normal(0.0, s_prior))), s_prior)
        sd = float(np.median([np.std(c["observed"] - c["truth"]) for c in curves]))
        settings = (("pruner", "pruner+K", "default", "exp")
                    + (("default+mu",) if family == "hb0.9" else ()))
        for setting in settings:
            for c in curves:
                rows.append(dict(family=family, samples=samples, sd=sd, fit=setting,
                                 **evaluate(c, args.prefix, setting)))
    df = pd.DataFrame(rows)
    keys = ["family", "samples", "sd", "fit"]
    print("Full curves (R2: vs the data; ceilR2: the true curve vs the data; R2truth: the fit vs "
          "the true mean curve; |dP| plateau error; nonExp: share where the reported model is "
          "not the exponential; dAICc: median AICc(exponential) - AICc(reported))")
    full = df.groupby(keys, sort=False).agg(
        medR2=("r2", "median"), ceilR2=("ceiling", "median"), R2truth=("r2_truth", "median"),
        dP=("plateau_err", "median"), P_le_01=("plateau_err", lambda s: np.mean(s <= 0.01)),
        nonExp=("non_exp", "mean"), dAICc=("d_aicc", "median"))
    print(full.round(4).to_string())
    df["prefix_efolds"] = pd.cut(df["efolds"], [b[0] for b in BINS] + [np.inf], right=False)
    print(f"\nFinal reward predicted from a {args.prefix:.0%} prefix (dpred: median |error| of "
          "predict()'s point, the posterior median for one-rate models; dpredLS: of the "
          "least-squares curve; le_05: share within 0.05; cov90: 90% interval covers the true "
          "mean; covObs: covers the noisy logged value)")
    tables = []
    for by in (keys, keys[:1] + ["fit", "prefix_efolds"]):
        pre = df.groupby(by, sort=False, observed=True).agg(
            n=("pred_err", "size"), dpred=("pred_err", "median"), dpredLS=("ls_err", "median"),
            le_05=("pred_err", lambda s: np.mean(s <= 0.05)), cov90=("cover", "mean"),
            covObs=("cover_obs", "mean"), width=("width", "median"))
        tables.append(pre)
        print(pre.round(3).to_string(), end="\n\n")
    print("Targets, `pruner` setting and `pruner+K` (what TrajectoryPruner fits without and "
          f"with a pilot's stiffness, prior log sd {s_prior:.3f}; pred: median error [bootstrap "
          "90% interval of that median over the cell's curves]):")
    both = full.join(tables[0])
    for (family, samples, _, setting), cell in both.iterrows():
        if setting in ("pruner", "pruner+K"):
            errs = df.loc[(df.family == family) & (df.samples == samples) & (df.fit == setting),
                          "pred_err"].to_numpy()
            print(f"  {family:6s} {samples:5d}  {setting:8s} {verdict(cell, median_ci(errs))}")
    ms = timing(rng, args.n_timing)
    print()
    for name, (fit_ms, pred_ms) in ms.items():
        print(f"time, 100 points, {name}: fit {fit_ms:.1f} ms, fit+predict {pred_ms:.1f} ms")
    return dict(full=full, prefix=tables[0], frame=df, timing_ms=ms)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-curves", type=int, default=Args.n_curves)
    parser.add_argument("--seed", type=int, default=Args.seed)
    parser.add_argument("--samples", type=int, nargs="+", default=list(Args.samples))
    parser.add_argument("--n-timing", type=int, default=Args.n_timing)
    parser.add_argument("--pilot-error", type=float, default=Args.pilot_error)
    ns = parser.parse_args()
    main(Args(n_curves=ns.n_curves, seed=ns.seed, samples=tuple(ns.samples),
              n_timing=ns.n_timing, pilot_error=ns.pilot_error))

"""Sweep efficiency: four ways to tune GRPO side by side, on bandit instances nobody tuned on.

Each trial trains a fixed number of steps. Its value is how fast it learns (mean reward of the
current policy over the first ``value_steps``: the bandit's exact, noise-free "eval reward";
reports are its mean over each ``log_every`` window) if it stays stable to the end; a run that
collapses or diverges (the shared instability rule on the policy's reward, non-finite values,
or entropy collapse) fails: it is marked ``advisor:collapsed`` and scores its start reward.
The search space is what a user would set before knowing anything: learning_rate log-uniform
over 5 decades, heavy-ball momentum in [0, 0.95], steps_per_generation 1..16, num_generations
{2, 4, 8, 16}.

Methods: (i) TPE + MedianPruner, (ii) Random + HyperbandPruner, (iii) TPE constrained by the
paper's closed form eta K K_ref < 1 - mu (K from the pilot, same reparametrisation, no online
update) + MedianPruner, (iv) StableRegionSampler (its defaults: chance constraint alpha = 0.01,
guided first trial) + TrajectoryPruner; ablations (iv-b) without the guided start and (iv-c)
without the chance constraint. (iii) and (iv) pay for the pilot (an on-policy learning-rate scan
plus one frozen-sampler run, 40 steps at G = 4) in their compute.

The value window is the first sixth of the run (50 of 300 steps). A window of 150 steps
saturates: every stable rate within about a decade below the edge reaches 90% of the best value
(measured on development seed 11, mu = 0, K_ref = 1, G = 8: lr 0.2-2.2 below an edge near 3),
so the metric cannot tell a method that finds the fast configurations from one that finds any
stable one; with 50 steps only about half a decade below the edge does (lr 0.46-2.2). Both
windows are reported in the results file. ``--trl`` runs part (b), the built-in tiny TRL task.

Metrics (median and IQR over instances): compute (optimizer steps x completions per step)
until a trial first reaches 90% of the way from the start reward to the best value any method
found on that instance (the best of methods (i)-(iv); the ablations (iv-b) no guided start and
(iv-c) no chance constraint are measured against it without moving it); fraction of trials
whose configuration collapses; best normalised value at a fixed compute budget. Problem
instances come from ``instance_seed``; development used seeds 0, 5, 7, 11 and 13; 2026, 4711,
90210 and 31337 were only used to confirm (see the results file for which run saw what). The
results file also lists every collapsed trial of (iv) with what the sampler knew when it placed
it (edge, edge factors, P(stable), guided).

Run: python benchmarks/sweep_efficiency.py     (writes benchmarks/results/sweep_efficiency.md)
     nice -n 10 python benchmarks/sweep_efficiency.py --trl --trl-steps 70 --trl-trials 10
     (writes benchmarks/results/sweep_efficiency_trl.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from advisor import bandit
from advisor.exceptions import AdvisorError
from advisor.instability import first_unstable_step
from advisor.instability import label_run
from advisor.pruner import TrajectoryPruner
from advisor.sampler import StableRegionSampler
from advisor.stability import EdgeEstimate
from advisor.stability import StabilityModel
from advisor.stiffness import PilotCurve
from advisor.stiffness import estimate_stiffness


@dataclasses.dataclass
class Args:
    n_instances: int = 20
    """bandit problem instances (one study per method each)"""
    instance_seed: int = 2026
    """seed of the instances; not used during development (that was seed 0)"""
    n_trials: int = 40
    """trials per study"""
    n_steps: int = 300
    """optimizer steps per trial"""
    value_steps: int = 50
    """the value is the mean reward of the current policy over these first steps (first sixth;
    150 was used before: it saturates, see the results file)"""
    log_every: int = 10
    """TRL-style logging: the reported reward is the mean over each window"""
    lr_low: float = 1e-3
    lr_high: float = 1e2
    budget_trials: float = 10.0
    """fixed budget for 'best at budget', in full trials at G = 8"""
    pilot_steps: int = 40
    """pilot run length (40 at G = 4: same K and std error as 80, half the cost)"""
    tau_fraction: float = 6.0
    """(iv) samples no rate slower than a time constant of value_steps / tau_fraction"""
    safety_margin: float = 0.1
    """(iv) log-margin below the predicted edge"""
    alpha: float = 0.01
    """(iv) chance constraint P(stable) >= 1 - alpha (the sampler's default)"""
    edge_bias: float = 3.0
    """(iv) start-up draws of the stability coordinate from Beta(edge_bias, 1)"""
    pruner_percentile: float = 0.0
    """(iv) TrajectoryPruner reference: 0 = the best completed trial, else this percentile"""
    pilot_generations: int = 4
    pilot_ratio: float = 3.0
    """learning-rate ratio between pilot scan levels"""
    methods: str = ("tpe_median,random_hyperband,tpe_closed_form,stable_trajectory,"
                    "stable_trajectory_noguide,stable_trajectory_margin")
    out: str = "benchmarks/results/sweep_efficiency.md"
    n_guided_trials: int = 1
    """(iv) trials that start at the model's predicted-fastest stable configuration"""
    trl: bool = False
    """part (b): the built-in tiny TRL task instead of the bandit"""
    trl_studies: int = 3
    trl_trials: int = 10
    """trials per TRL study"""
    trl_steps: int = 60
    """optimizer steps per TRL trial (128 completions each)"""
    trl_lr_low: float = 1e-6
    trl_lr_high: float = 1e-1
    trl_pilot_horizon: int = 30
    """pilot confirmation-run length (scan runs: half, at least 20): a small usable pilot"""
    trl_methods: str = ("tpe_median,random_hyperband,tpe_closed_form,stable_trajectory,"
                        "stable_trajectory_noguide")
    trl_out: str = "benchmarks/results/sweep_efficiency_trl.md"


SPACE = {
    "momentum": FloatDistribution(0.0, 0.95),
    "steps_per_generation": IntDistribution(1, 16),
    "num_generations": CategoricalDistribution((2, 4, 8, 16)),
}
LABELS = {"tpe_median": "(i) TPE + Median", "random_hyperband": "(ii) Random + Hyperband",
          "tpe_closed_form": "(iii) TPE + closed form", "stable_trajectory": "(iv) this plugin",
          "stable_trajectory_noguide": "(iv-b) plugin, no guided start",
          "stable_trajectory_margin": "(iv-c) plugin, margin only (alpha off)"}
MAIN = ("tpe_median", "random_hyperband", "tpe_closed_form", "stable_trajectory")
PLUGIN_OPTIONS = {  # (iv) is the sampler's defaults; (iv-b), (iv-c) are ablations
    "stable_trajectory": {},
    "stable_trajectory_noguide": {"n_guided_trials": 0},
    "stable_trajectory_margin": {"alpha": None},
}


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        if isinstance(f.default, bool):
            parser.add_argument(f"--{f.name.replace('_', '-')}", action="store_true")
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                            default=f.default)
    return Args(**vars(parser.parse_args()))


# ======================================================================= problem and objective
def draw_problem(rng: np.random.Generator) -> bandit.BanditProblem:
    """A random prompt: 2-4 arms with rewards in [0, 1], a KL anchor, a random start policy."""
    n = int(rng.choice([2, 3, 4]))
    rewards = np.concatenate([[0.0, 1.0], rng.uniform(0.0, 1.0, n - 2)])
    return bandit.BanditProblem(rewards=tuple(rewards), beta=float(rng.choice([0.1, 0.3, 1.0])),
                                init_logits=tuple(rng.normal(0.0, 1.0, n)), std_eps=1e-4)


def entropy(logits: np.ndarray) -> float:
    z = np.exp(logits - logits.max())
    p = z / z.sum()
    return float(-(p * np.log(np.maximum(p, 1e-300))).sum())


def collapsed(reward_current: np.ndarray, diverged: bool, final_logits: np.ndarray | None = None,
              fixed_entropy: float | None = None) -> bool:
    """Ground truth: divergence; any event of the shared instability rule (not 'no gain'); or
    policy concentration: the final policy's entropy below half that of the KL-anchored fixed
    point (the bandit's stand-in for an LM's entropy collapse, theory.md section 5)."""
    if diverged or not np.isfinite(reward_current).all():
        return True
    label = label_run({"reward": reward_current.tolist()}, start_reward=float(reward_current[0]))
    if label.unstable and label.reason != "no_net_gain":
        return True
    if final_logits is not None and fixed_entropy is not None and fixed_entropy > 0.05:
        return entropy(final_logits) < 0.5 * fixed_entropy
    return False


def make_objective(problem: bandit.BanditProblem, args: Args, seed: int) -> Any:
    p0 = problem.start_reward
    h_star = {g: entropy(bandit.fixed_point(problem, num_generations=g)[0]) for g in (2, 4, 8, 16)}

    def objective(trial: optuna.Trial) -> float:
        momentum = trial.suggest_float("momentum", 0.0, 0.95)
        spg = trial.suggest_int("steps_per_generation", 1, 16)
        g = trial.suggest_categorical("num_generations", (2, 4, 8, 16))
        lr = trial.suggest_float("learning_rate", args.lr_low, args.lr_high, log=True)
        run = bandit.simulate(problem, learning_rate=lr, momentum=momentum, refresh_interval=spg,
                              num_generations=g, n_steps=args.n_steps,
                              seed=seed * 100_003 + trial.number)
        current = run.reward_current[0]
        bad = collapsed(current, bool(run.diverged[0]), run.final_logits[0], h_star[g])
        trial.set_user_attr("bench:collapsed", bad)  # ground truth, recorded even if pruned
        for end in range(args.log_every, args.n_steps + 1, args.log_every):
            trial.report(float(np.mean(current[end - args.log_every:end])), end - 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if bad:
            trial.set_user_attr("advisor:collapsed", True)
            return p0
        return float(np.mean(current[: args.value_steps]))

    return objective


# ======================================================================= the pilot (iii, iv)
@dataclasses.dataclass
class Pilot:
    model: Any  # StabilityModel or None
    stiffness: float
    cost: float  # completions
    message: str


def run_pilot(problem: bandit.BanditProblem, args: Args, seed: int) -> Pilot:
    """A learning-rate scan DOWN from the top of the range (on-policy, mu = 0), each run stopped
    at its first collapse, until two runs stay stable; one frozen-sampler run at the largest
    stable rate. Gives K (tail fits), its split K_c/K_o, and the measured edge bracket."""
    g, n, cost = args.pilot_generations, args.pilot_steps, 0.0
    h_star = entropy(bandit.fixed_point(problem, num_generations=g)[0])
    stable: list[tuple[float, np.ndarray]] = []
    first_bad = None
    lr = args.lr_high
    while lr >= args.lr_low and len(stable) < 2:
        run = bandit.simulate(problem, learning_rate=lr, num_generations=g, n_steps=n,
                              seed=seed)
        cur = run.reward_current[0]
        if collapsed(cur, bool(run.diverged[0]), run.final_logits[0], h_star):
            stop = first_unstable_step({"reward": cur.tolist()}) if np.isfinite(cur).all() \
                else int(np.argmax(~np.isfinite(cur)))
            cost += g * (n if stop is None else stop + 1)  # the pilot stops at the collapse
            first_bad = lr
            stable.clear()
        else:
            cost += n * g
            if np.ptp(cur) > 0.02:  # moved enough to measure a rate
                stable.append((lr, cur))
        lr /= args.pilot_ratio
    if not stable:
        return Pilot(None, math.nan, cost, "no stable moving pilot curve")
    stable.sort()
    curves = [PilotCurve(rewards=tuple(c), learning_rate=x, samples_per_step=g)
              for x, c in stable]
    lr_f = stable[-1][0]
    frozen = bandit.simulate(problem, learning_rate=lr_f, num_generations=g, n_steps=n,
                             refresh_interval=n, seed=seed + 1)
    cost += n * g
    if not frozen.diverged[0] and np.ptp(frozen.reward_current[0]) > 0.02:
        curves.append(PilotCurve(rewards=tuple(frozen.reward_current[0]), learning_rate=lr_f,
                                 refresh_interval=n, refresh_scheme="frozen",
                                 samples_per_step=g))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = estimate_stiffness(curves, nan_policy="omit")
            k = est.stiffness
            edge = None
            if first_bad is not None:
                lo, hi = lr_f * k, first_bad * k
                edge = EdgeEstimate(rate=math.sqrt(lo * hi), low=lo, high=hi,
                                    samples_per_step=g, horizon_steps=n, optimizer="sgd",
                                    n_runs=len(stable) + 1)
            model = BanditKnobs(StabilityModel(est, edge=edge))
    except (AdvisorError, ValueError) as exc:
        return Pilot(None, math.nan, cost, f"pilot failed: {exc}")
    return Pilot(model, k, cost, est.message)


class BanditKnobs:
    """TRL knobs of a bandit trial. One prompt per step: completions per step = G, so the model
    moves the measured edge to each trial's G by its batch law (per_device_train_batch_size =
    num_generations). The bandit reuses one group for the K_ref steps of a refresh, which in TRL
    is ``num_iterations`` (steps_per_generation draws fresh completions each step), so the
    searched ``steps_per_generation`` reaches the model as num_iterations (same lag K_ref)."""

    def __init__(self, model: StabilityModel) -> None:
        self.model, self.estimate = model, model.estimate

    def _map(self, p: Any) -> dict[str, Any]:
        out = {k: v for k, v in p.items() if k != "steps_per_generation"}
        out["num_iterations"] = p.get("steps_per_generation", 1)
        out["per_device_train_batch_size"] = p.get("num_generations", 8)
        return out

    def assess(self, p: Any) -> Any:
        return self.model.assess(self._map(p))

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        return self.model.assess_many(self._map(p), details=details)


class ClosedForm:
    """The paper's line eta K K_ref < 1 - mu as a model for StableRegionSampler (method iii)."""

    def __init__(self, stiffness: float) -> None:
        self.k = stiffness

    def assess_many(self, p: Any, *, details: bool = False) -> dict[str, Any]:
        lr = np.asarray(p["learning_rate"], dtype=float)
        mu = np.broadcast_to(np.asarray(p.get("momentum", 0.0), dtype=float), lr.shape)
        kref = np.broadcast_to(np.asarray(p.get("steps_per_generation", 1), dtype=float),
                               lr.shape)
        top = (1 - mu) / (self.k * kref)
        gap = 1 - mu - lr * self.k * kref
        return {"max_learning_rate": top, "margin": np.log(top / lr), "stable": lr < top,
                "probability": (lr < top).astype(float),
                "damping_ratio": gap / (2 * np.sqrt(lr * self.k)),
                "time_constant": (1 - mu) / (lr * self.k),
                "regime": np.full(lr.shape, "monotone", dtype=object)}

    def assess(self, p: Any) -> Any:
        out = self.assess_many({k: np.atleast_1d(v) for k, v in p.items()}, details=True)
        return type("Verdict", (), {k: v[0] for k, v in out.items()})()


# ======================================================================= methods
def make_study(method: str, args: Args, pilot: Pilot, seed: int) -> optuna.Study:
    median = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=50)
    space = {**SPACE, "learning_rate": FloatDistribution(args.lr_low, args.lr_high, log=True)}
    if method == "tpe_median":
        sampler, pruner = optuna.samplers.TPESampler(seed=seed), median
    elif method == "random_hyperband":
        sampler = optuna.samplers.RandomSampler(seed=seed)
        pruner = optuna.pruners.HyperbandPruner(min_resource=30, max_resource=args.n_steps,
                                                reduction_factor=3)
    elif method == "tpe_closed_form" and pilot.model is not None:
        sampler = StableRegionSampler(model=ClosedForm(pilot.stiffness), search_space=space,
                                      seed=seed, safety_margin=0.0, online_update=False)
        pruner = median
    elif method.startswith("stable_trajectory") and pilot.model is not None:
        sampler = StableRegionSampler(**{
            "model": pilot.model, "search_space": space, "seed": seed,
            "max_time_constant": args.value_steps / args.tau_fraction,
            "safety_margin": args.safety_margin, "edge_bias": args.edge_bias,
            "n_guided_trials": args.n_guided_trials, "alpha": args.alpha,
            **PLUGIN_OPTIONS[method]})
        pruner = TrajectoryPruner(n_warmup_steps=50, n_steps=args.value_steps,
                                  statistic="mean", percentile=args.pruner_percentile or None)
    else:  # the pilot failed: the method degrades to plain TPE + Median (still pays the pilot)
        sampler, pruner = optuna.samplers.TPESampler(seed=seed), median
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


def collapsed_rows(study: optuna.Study, instance: int) -> list[str]:
    """One table row per collapsed trial of a plugin study: what the sampler knew when it
    placed the trial (the instrumentation behind the 'Collapsed trials' section)."""
    rows = []
    for t in study.trials:
        ua = t.user_attrs
        if not ua.get("bench:collapsed"):
            continue
        top = ua.get("advisor:lr_max_model")
        lr = t.params.get("learning_rate", math.nan)
        local = ua.get("advisor:local_scale")
        rows.append(
            f"| {instance} | {t.number} | {t.params.get('momentum', math.nan):.2f} | "
            f"{t.params.get('steps_per_generation')} | {t.params.get('num_generations')} | "
            f"{lr:.3g} | {top or math.nan:.3g} | {lr / top if top else math.nan:.2f} | "
            f"{ua.get('advisor:edge_scale', math.nan):.2f} | "
            f"{'-' if local is None else f'{local:.2f}'} | "
            f"{lr / ua['advisor:lr_upper'] if ua.get('advisor:lr_upper') else math.nan:.2f} | "
            f"{ua.get('advisor:p_stable', math.nan):.4f} | "
            f"{'yes' if ua.get('advisor:guided') else 'no'} | "
            f"{'collapse' if ua.get('advisor:prune_reason') == 'collapse' else t.state.name} |")
    return rows


def trial_records(study: optuna.Study, args: Args) -> list[tuple[float, float | None, bool]]:
    """(compute, value if a usable result else None, collapsed) per trial, in order."""
    out = []
    for t in study.trials:
        g = t.params.get("num_generations", 8)
        steps = args.n_steps if t.state == TrialState.COMPLETE else (
            (t.last_step + 1) if t.last_step is not None else 0)
        bad = bool(t.user_attrs.get("bench:collapsed", False))
        ok = t.state == TrialState.COMPLETE and not bad
        out.append((float(steps * g), t.value if ok else None, bad))
    return out


# ======================================================================= metrics
def summarise(results: dict[str, list[dict[str, Any]]], p0s: list[float],
              args: Args, budget: float | None = None) -> dict[str, dict[str, Any]]:
    n = len(p0s)
    # the reference is the best value of the compared methods (i)-(iv); ablations of (iv) are
    # measured against it but do not move it (adding an ablation must not change the headline)
    ref = [m for m in results if m in MAIN] or list(results)
    best_any = [max((v for m in ref for rec in [results[m][i]["trials"]]
                     for _, v, _ in rec if v is not None), default=p0s[i]) for i in range(n)]
    if budget is None:
        budget = args.budget_trials * args.n_steps * 8
    out = {}
    for m, studies in results.items():
        to90, best_at, frac = [], [], []
        for i, s in enumerate(studies):
            span = best_any[i] - p0s[i]
            thresh = p0s[i] + 0.9 * span
            cum, hit, best = s["pilot_cost"], math.inf, 0.0
            for compute, value, _ in s["trials"]:
                cum += compute
                if value is not None and value >= thresh and hit == math.inf:
                    hit = cum
                if value is not None and cum <= budget and span > 0:
                    best = max(best, (value - p0s[i]) / span)
            to90.append(hit)
            best_at.append(best)
            frac.append(np.mean([b for _, _, b in s["trials"]]))
        out[m] = {"to90": np.array(to90), "best_at": np.array(best_at), "frac": np.array(frac),
                  "pilot": np.array([s["pilot_cost"] for s in studies])}
    return out


def q(x: np.ndarray, p: float) -> float:
    return float(np.quantile(x, p, method="inverted_cdf"))


def _ratio(r: np.ndarray) -> float:
    r = r[np.isfinite(r)]
    return float(np.median(r)) if r.size else math.nan


def fmt_k(x: float) -> str:
    return "not reached" if not math.isfinite(x) else f"{x / 1000:.1f}k"


# ======================================================================= part (b): tiny TRL task
TRL_BATCH = 128  # completions per optimizer step (per_device_train_batch_size), every trial


def trl_space(args: Args) -> dict[str, Any]:
    return {"adam_beta1": FloatDistribution(0.0, 0.95),
            "steps_per_generation": IntDistribution(1, 16),
            "num_generations": CategoricalDistribution((2, 4, 8, 16)),
            "learning_rate": FloatDistribution(args.trl_lr_low, args.trl_lr_high, log=True)}


def run_trl(args: Args) -> None:
    """Part (b): real TRL GRPOTrainer trials on the built-in tiny task (AdamW, 128 completions
    per step). The value is the mean reward over the trial's steps (the trial is the first
    part of a planned run); a collapsed run scores the task's start success rate. (iii) and
    (iv) share one pilot (run once, its cost charged to every study of both)."""
    import tempfile

    from advisor.pilot import make_objective as trl_objective
    from advisor.pilot import run_pilot as trl_pilot
    from advisor.tasks import builtin_task
    from advisor.tasks import default_config

    methods = args.trl_methods.split(",")
    task = builtin_task()
    root = Path(tempfile.mkdtemp(prefix="sweep-trl-"))
    base = default_config(str(root / "trainer"), max_steps=args.trl_steps,
                          per_device_train_batch_size=TRL_BATCH)
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pres = trl_pilot(task.model_path, list(task.reward_funcs), task.train_dataset, base,
                         processing_class=task.tokenizer, output_dir=root / "pilot",
                         planned_steps=args.trl_steps, horizon_steps=args.trl_pilot_horizon,
                         scan_steps=max(20, args.trl_pilot_horizon // 2),
                         budget_steps=max(3 * args.trl_steps,
                                          4 * max(args.trl_pilot_horizon, 20)),
                         progress=False)
    pilot_cost = float(sum(r.steps_done * r.samples_per_step for r in pres.runs))
    k = pres.stiffness.stiffness
    pilot_line = (f"pilot: {pres.cost_steps} optimizer steps = {pilot_cost / 1000:.1f}k "
                  f"completions, {pres.cost_seconds:.0f} s; K = {k:.3g} +- "
                  f"{pres.stiffness.std_error:.2g}; edge lr bracket "
                  f"{pres.edge_learning_rate[0]:.3g} - {pres.edge_learning_rate[2]:.3g}")
    print(pilot_line, f"(per-trial log: {root / 'trials.jsonl'})", file=sys.stderr)
    pilot = Pilot(pres.model(), k, pilot_cost, pres.message)
    defaults = {"optim": str(getattr(base.optim, "value", base.optim)),
                "per_device_train_batch_size": TRL_BATCH,
                "gradient_accumulation_steps": 1}
    p0 = float(task.base_success)
    space = trl_space(args)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}

    def search(trial: optuna.Trial) -> dict[str, Any]:
        return {"adam_beta1": trial.suggest_float("adam_beta1", 0.0, 0.95),
                "steps_per_generation": trial.suggest_int("steps_per_generation", 1, 16),
                "num_generations": trial.suggest_categorical("num_generations", (2, 4, 8, 16)),
                "learning_rate": trial.suggest_float("learning_rate", args.trl_lr_low,
                                                     args.trl_lr_high, log=True)}

    for i in range(args.trl_studies):
        seed = 5000 + i
        for m in methods:
            median = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20)
            if m == "tpe_median":
                sampler, pruner = optuna.samplers.TPESampler(seed=seed), median
            elif m == "random_hyperband":
                sampler = optuna.samplers.RandomSampler(seed=seed)
                pruner = optuna.pruners.HyperbandPruner(min_resource=15,
                                                        max_resource=args.trl_steps,
                                                        reduction_factor=3)
            elif m == "tpe_closed_form":
                sampler = StableRegionSampler(model=ClosedForm(k), search_space=space,
                                              defaults=defaults, seed=seed, safety_margin=0.0,
                                              online_update=False, n_guided_trials=0)
                pruner = median
            else:
                sampler = StableRegionSampler(**{
                    "model": pilot.model, "search_space": space, "defaults": defaults,
                    "seed": seed, "safety_margin": args.safety_margin,
                    "edge_bias": args.edge_bias, "n_guided_trials": args.n_guided_trials,
                    "alpha": args.alpha, **PLUGIN_OPTIONS[m]})
                pruner = TrajectoryPruner(n_warmup_steps=20, n_steps=args.trl_steps,
                                          statistic="mean")
            study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
            objective = trl_objective(task.model_path, list(task.reward_funcs),
                                      task.train_dataset, base, search_space=search,
                                      processing_class=task.tokenizer,
                                      output_dir=root / f"{m}-{i}", window=args.trl_steps,
                                      collapsed_value=p0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                study.optimize(objective, n_trials=args.trl_trials, catch=(Exception,))
            recs = []
            for t in study.trials:
                steps = args.trl_steps if t.state == TrialState.COMPLETE else (
                    t.last_step if t.last_step is not None else 0)
                ua = t.user_attrs
                bad = ua.get("advisor:collapsed") is True or \
                    ua.get("advisor:prune_reason") == "collapse"
                ok = t.state == TrialState.COMPLETE and not bad and t.value is not None \
                    and math.isfinite(t.value)
                recs.append((float(steps * TRL_BATCH), t.value if ok else None, bad))
            pays = m == "tpe_closed_form" or m.startswith("stable_trajectory")
            results[m].append({"trials": recs, "pilot_cost": pilot.cost if pays else 0.0})
            with (root / "trials.jsonl").open("a") as fh:
                for t in study.trials:
                    fh.write(json.dumps({"method": m, "study": i, "number": t.number,
                                         "state": t.state.name, "value": t.value,
                                         "params": t.params, "last_step": t.last_step,
                                         "attrs": {k: v for k, v in t.user_attrs.items()
                                                   if not isinstance(v, (dict, list))}},
                                        default=str) + "\n")
            best = max((v for _, v, _ in recs if v is not None), default=p0)
            n_bad = sum(b for *_, b in recs)
            print(f"study {i} {m}: best {best:.3f} collapsed {n_bad}/{len(recs)} "
                  f"({time.time() - t0:.0f} s)", file=sys.stderr)
            write_trl(args, results, p0, pilot_line, time.time() - t0, i, m)


def write_trl(args: Args, results: dict[str, list[dict[str, Any]]], p0: float,
              pilot_line: str, wall: float, study_index: int, last_method: str) -> None:
    """Table over the studies every method has finished (partial while running)."""
    n = min(len(r) for r in results.values())
    status = "complete" if n == args.trl_studies else (
        f"PARTIAL: {n} of {args.trl_studies} studies finished by every method (last finished: "
        f"study {study_index}, {last_method})")
    lines = ["# Sweep efficiency on the built-in tiny TRL task (part b)", "",
             f"`nice -n 10 python benchmarks/sweep_efficiency.py --trl` ({status}; "
             f"{args.trl_trials} trials per study, {args.trl_steps} optimizer steps x "
             f"{TRL_BATCH} completions per trial, AdamW, lr log-uniform "
             f"[{args.trl_lr_low:g}, {args.trl_lr_high:g}], adam_beta1 [0, 0.95], "
             "steps_per_generation 1..16, num_generations {2, 4, 8, 16}; wall time "
             f"{wall:.0f} s).", "",
             "Value = mean reward over the trial's steps (a collapsed run scores the start "
             f"success rate {p0:.3f}). Collapsed = `advisor:collapsed` (the shared instability "
             "rule fired or training raised) or pruned for collapse; a trial pruned for being "
             "slow is not known to collapse, so this undercounts for methods that prune "
             "early. Compute = optimizer steps x 128 completions, pilot included for (iii), "
             f"(iv). {pilot_line}.", ""]
    if n == 0:
        lines.append("No study finished yet.")
    else:
        res = {m: r[:n] for m, r in results.items()}
        summ = summarise(res, [p0] * n, args,
                         budget=args.trl_trials / 2.0 * args.trl_steps * TRL_BATCH)
        lines += ["| method | to 90%: median | IQR | reached | collapsed trials (pooled) | "
                  "best value: median | best at half budget: median | pilot cost |",
                  "|---|---:|---|---:|---:|---:|---:|---:|"]
        for m in res:
            s = summ[m]
            pooled = np.mean([b for st in res[m] for _, _, b in st["trials"]])
            bests = [max((v for _, v, _ in st["trials"] if v is not None), default=p0)
                     for st in res[m]]
            lines.append(
                f"| {LABELS.get(m, m)} | {fmt_k(q(s['to90'], 0.5))} | "
                f"{fmt_k(q(s['to90'], 0.25))} - {fmt_k(q(s['to90'], 0.75))} | "
                f"{int(np.isfinite(s['to90']).sum())}/{n} | {100 * pooled:.1f}% | "
                f"{np.median(bests):.3f} | {q(s['best_at'], 0.5):.3f} | "
                f"{np.median(s['pilot']) / 1000:.1f}k |")
    Path(args.trl_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.trl_out).write_text("\n".join(lines) + "\n")


# ======================================================================= main
if __name__ == "__main__":
    args = parse_args()
    if args.trl:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        run_trl(args)
        sys.exit(0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    methods = args.methods.split(",")
    rng = np.random.default_rng(args.instance_seed)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    p0s, notes = [], []
    instrumented: list[str] = []
    t_start = time.time()
    for i in range(args.n_instances):
        problem = draw_problem(rng)
        p0s.append(problem.start_reward)
        seed = args.instance_seed * 1000 + i
        pilot = run_pilot(problem, args, seed)
        if pilot.model is None:
            notes.append(f"instance {i}: {pilot.message}")
        for m in methods:
            study = make_study(m, args, pilot, seed)
            study.optimize(make_objective(problem, args, seed), n_trials=args.n_trials)
            pays = m == "tpe_closed_form" or m.startswith("stable_trajectory")
            results[m].append({"trials": trial_records(study, args),
                               "pilot_cost": pilot.cost if pays else 0.0})
            if m == "stable_trajectory":
                instrumented += collapsed_rows(study, i)
        print(f"instance {i}: arms={problem.n_arms} beta={problem.beta} "
              f"p0={problem.start_reward:.3f} K_pilot={pilot.stiffness:.3g} "
              f"pilot={pilot.cost / 1000:.1f}k ({time.time() - t_start:.0f} s)", file=sys.stderr)

    # ---------------------------------------------------------------- table
    summary = summarise(results, p0s, args)
    baselines = [m for m in methods if not m.startswith("stable_trajectory")]
    lines = [
        "# Sweep efficiency on the exact GRPO bandit",
        "",
        f"`python benchmarks/sweep_efficiency.py` ({args.n_instances} instances from seed "
        f"{args.instance_seed}, {args.n_trials} trials per study, {args.n_steps} steps per "
        f"trial, value = mean current-policy reward over the first {args.value_steps} steps; "
        f"wall time {time.time() - t_start:.0f} s).",
        "",
        "Compute = optimizer steps x completions per step (G), including the pilot for (iii) "
        "and (iv). 'to 90%' = compute until a trial first reaches 90% of the way from the start "
        "reward to the best value methods (i)-(iv) found on that instance (ablations do not "
        "move it). 'best at budget' = best "
        f"value within {args.budget_trials:g} full trials at G=8 "
        f"({args.budget_trials * args.n_steps * 8 / 1000:g}k completions), normalised to "
        "(value - start)/(best any - start). Collapsed = the configuration collapses or "
        "diverges within the run (ground truth, pruned or not).",
        "",
        "| method | to 90%: median | IQR | reached | collapsed trials (pooled) | collapsed "
        "per study: median [IQR] | best at budget: median [IQR] | pilot cost |",
        "|---|---:|---|---:|---:|---|---|---:|",
    ]
    for m in methods:
        s = summary[m]
        reached = int(np.isfinite(s["to90"]).sum())
        pooled = np.mean([b for st in results[m] for _, _, b in st["trials"]])
        lines.append(
            f"| {LABELS.get(m, m)} | {fmt_k(q(s['to90'], 0.5))} | "
            f"{fmt_k(q(s['to90'], 0.25))} - {fmt_k(q(s['to90'], 0.75))} | "
            f"{reached}/{len(s['to90'])} | {100 * pooled:.1f}% | "
            f"{100 * q(s['frac'], 0.5):.1f}% [{100 * q(s['frac'], 0.25):.1f}, "
            f"{100 * q(s['frac'], 0.75):.1f}] | {q(s['best_at'], 0.5):.3f} "
            f"[{q(s['best_at'], 0.25):.3f}, {q(s['best_at'], 0.75):.3f}] | "
            f"{np.median(s['pilot']) / 1000:.1f}k |")
    if "stable_trajectory" in summary and baselines:
        ours = q(summary["stable_trajectory"]["to90"], 0.5)
        best_base = min(q(summary[m]["to90"], 0.5) for m in baselines)
        ratio = best_base / ours if math.isfinite(ours) and ours > 0 else math.nan
        with np.errstate(invalid="ignore"):
            per = [summary[m]["to90"] / summary["stable_trajectory"]["to90"] for m in baselines]
        lines += ["", f"Median compute to 90%: best baseline / (iv) = **{ratio:.2f}x** "
                  "(target >= 2x). Per-instance ratio of each baseline to (iv), median over "
                  "instances reached by both: " + ", ".join(
                      f"{LABELS[m]} {_ratio(r):.2f}x" for m, r in
                      zip(baselines, per, strict=True)) + "."]
    if "stable_trajectory" in results:
        lines += ["", f"Collapsed trials of (iv) ({len(instrumented)}): knobs, the model's "
                  "edge eta_max, r = lr / eta_max, the global edge factor s and the local "
                  "factor when the trial was placed, lr / cap, the model's P(stable) at lr, "
                  "guided, how it ended.", "",
                  "| instance | trial | momentum | spg | G | lr | eta_max | r | s | local | "
                  "lr / cap | P(stable) | guided | end |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
                  *instrumented]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)

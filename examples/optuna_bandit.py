"""Sweep the exact GRPO bandit with StableRegionSampler + TrajectoryPruner (two changed lines).

The first trial runs the model's predicted-fastest stable configuration (``n_guided_trials=1``,
the default); the base sampler (TPE) explores inside the stable region from there. The study
lives in SQLite under studies/ and resumes where it stopped: run it twice and the
second run adds trials to the first. Each trial's prediction is in its ``advisor:`` user
attributes (see them with ``optuna-dashboard sqlite:///studies/optuna-bandit.db``).

Run: python examples/optuna_bandit.py [n_trials]
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from advisor import StabilityModel
from advisor import StableRegionSampler
from advisor import TrajectoryPruner
from advisor import bandit


N_STEPS = 300
SPACE = {"momentum": FloatDistribution(0.0, 0.95),
         "steps_per_generation": IntDistribution(1, 16),
         "learning_rate": FloatDistribution(1e-3, 1e2, log=True)}
problem = bandit.BanditProblem.reference()


def objective(trial: optuna.Trial) -> float:
    momentum = trial.suggest_float("momentum", 0.0, 0.95)
    spg = trial.suggest_int("steps_per_generation", 1, 16)
    lr = trial.suggest_float("learning_rate", 1e-3, 1e2, log=True)  # the sampler picks it
    run = bandit.simulate(problem, learning_rate=lr, momentum=momentum, refresh_interval=spg,
                          n_steps=N_STEPS)
    reward = run.reward_current[0]
    for step in range(0, N_STEPS, 10):
        trial.report(float(reward[step]), step)
        if trial.should_prune():  # collapse (NaN / drop) or a hopeless trajectory
            raise optuna.TrialPruned()
    return float(reward[: N_STEPS // 6].mean())  # how fast it learns: the first sixth


if __name__ == "__main__":
    n_trials = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the bandit's stiffness is exact (its Jacobian); for an LM it comes from run_pilot(...)
    k, k_c, k_o = bandit.jacobian_stiffness(problem)
    model = StabilityModel(SimpleNamespace(stiffness=k, stiffness_current=k_c,
                                           stiffness_sampler=k_o, std_error=0.02 * k))
    Path("studies").mkdir(exist_ok=True)
    study = optuna.create_study(
        study_name="optuna-bandit", storage="sqlite:///studies/optuna-bandit.db",
        load_if_exists=True, direction="maximize",
        sampler=StableRegionSampler(model=model, search_space=SPACE, seed=0),  # changed line 1
        pruner=TrajectoryPruner(n_warmup_steps=60, n_steps=N_STEPS, statistic="mean",
                                stiffness=model),  # changed line 2
    )
    study.optimize(objective, n_trials=n_trials)
    best = study.best_trial
    print(f"{len(study.trials)} trials, best {best.value:.3f} at {best.params}")
    print({k: v for k, v in best.user_attrs.items() if k.startswith("advisor:")})

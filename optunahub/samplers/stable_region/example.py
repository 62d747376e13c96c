"""StableRegionSampler on the exact GRPO bandit: every trial is predicted stable.

With OptunaHub: ``StableRegionSampler = optunahub.load_module("samplers/stable_region")
.StableRegionSampler``; the import below is the same class from the installed package.
"""

from types import SimpleNamespace

import optuna

from advisor import bandit
from advisor.sampler import StableRegionSampler
from advisor.stability import StabilityModel


problem = bandit.BanditProblem.reference()
k, k_c, k_o = bandit.jacobian_stiffness(problem)  # a pilot run measures these for an LM
model = StabilityModel(SimpleNamespace(stiffness=k, stiffness_current=k_c,
                                       stiffness_sampler=k_o, std_error=0.02 * k))


def objective(trial: optuna.Trial) -> float:
    momentum = trial.suggest_float("momentum", 0.0, 0.95)
    spg = trial.suggest_int("steps_per_generation", 1, 16)
    lr = trial.suggest_float("learning_rate", 1e-3, 1e2, log=True)
    run = bandit.simulate(problem, learning_rate=lr, momentum=momentum, refresh_interval=spg,
                          n_steps=200)
    if run.diverged[0]:
        trial.set_user_attr("advisor:collapsed", True)  # evidence for the online edge update
        return 0.0
    return float(run.reward_current[0, :100].mean())


sampler = StableRegionSampler(model=model, seed=0, alpha=0.05)
study = optuna.create_study(direction="maximize", sampler=sampler)
study.optimize(objective, n_trials=20)
print(study.best_params, study.best_trial.user_attrs["advisor:regime"])

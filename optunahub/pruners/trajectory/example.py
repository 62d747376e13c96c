"""TrajectoryPruner on the exact GRPO bandit: slow learners and collapses stop early.

With OptunaHub: ``TrajectoryPruner = optunahub.load_module("pruners/trajectory")
.TrajectoryPruner``; the import below is the same class from the installed package.
"""

import optuna

from advisor import bandit
from advisor.pruner import TrajectoryPruner


problem = bandit.BanditProblem.reference()
N_STEPS = 300


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("learning_rate", 1e-3, 1e2, log=True)
    reward = bandit.simulate(problem, learning_rate=lr, n_steps=N_STEPS).reward_current[0]
    for step in range(0, N_STEPS, 10):
        trial.report(float(reward[step]), step)  # reward per step; NaN = divergence
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(reward[: N_STEPS // 2].mean())


pruner = TrajectoryPruner(n_warmup_steps=60, n_steps=N_STEPS, statistic="mean")
study = optuna.create_study(direction="maximize", pruner=pruner)
study.optimize(objective, n_trials=20)
pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
print(f"best {study.best_value:.3f}; pruned {len(pruned)}:",
      [t.user_attrs.get("advisor:prune_reason") for t in pruned])

"""A real TRL GRPO sweep guided by the advisor: pilot, then two changed lines in the study.

Runs on CPU on the built-in tiny task (a 162k-parameter Llama learning "a+b="): the pilot
measures the stiffness and the collapse edge with short real ``GRPOTrainer`` runs, then Optuna
samples AdamW learning rate, ``adam_beta1`` and ``steps_per_generation`` only inside the region
the calibrated model predicts stable. The study is stored in SQLite under studies/ and resumes.

Run: python examples/optuna_trl.py [n_trials]   (a few minutes on 2 cores)
"""

import sys
import warnings
from pathlib import Path

import optuna

from advisor import StableRegionSampler
from advisor import TrajectoryPruner
from advisor.pilot import make_objective
from advisor.pilot import run_pilot
from advisor.tasks import builtin_task
from advisor.tasks import default_config


STEPS = 60

if __name__ == "__main__":
    n_trials = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    warnings.simplefilter("ignore", FutureWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path("studies/optuna-trl")
    work.mkdir(parents=True, exist_ok=True)

    task = builtin_task()  # warm-start checkpoint, built once and cached
    config = default_config(str(work / "trainer"), learning_rate=3e-4, max_steps=STEPS)
    pilot = run_pilot(task.model_path, list(task.reward_funcs), task.train_dataset, config,
                      processing_class=task.tokenizer, output_dir=str(work / "pilot"),
                      planned_steps=STEPS)
    print(f"pilot: {pilot.cost_steps} steps, edge lr {pilot.edge_learning_rate[1]:.3g}")

    # the same space as distributions too: with it the sampler knows the space before the first
    # trial, so trial 0 runs the model's predicted-fastest stable configuration
    distributions = {"adam_beta1": optuna.distributions.FloatDistribution(0.0, 0.95),
                     "steps_per_generation": optuna.distributions.IntDistribution(1, 4),
                     "learning_rate": optuna.distributions.FloatDistribution(1e-6, 1e-1,
                                                                             log=True)}

    def space(trial: optuna.Trial) -> dict:
        return {"adam_beta1": trial.suggest_float("adam_beta1", 0.0, 0.95),
                "steps_per_generation": trial.suggest_int("steps_per_generation", 1, 4),
                "learning_rate": trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)}

    study = optuna.create_study(
        study_name="optuna-trl", storage=f"sqlite:///{work}/study.db", load_if_exists=True,
        direction="maximize",
        sampler=StableRegionSampler(model=pilot.model(), search_space=distributions,
                                    seed=0),  # changed line 1
        pruner=TrajectoryPruner(n_warmup_steps=20, n_steps=STEPS,
                                stiffness=pilot.model()),  # changed line 2
    )
    study.optimize(make_objective(task.model_path, list(task.reward_funcs), task.train_dataset,
                                  config, search_space=space, processing_class=task.tokenizer,
                                  output_dir=str(work / "trials")), n_trials=n_trials)
    best = study.best_trial
    print(f"best reward {best.value:.3f} with {best.params}")
    for t in study.trials:
        print(t.number, t.state.name, {k: float(f"{v:.3g}") for k, v in t.params.items()},
              "collapsed" if t.user_attrs.get("advisor:collapsed") else "")

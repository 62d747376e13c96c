"""Run the GRPO pilot on the built-in tiny task and ask the calibrated model for a safe lr.

The pilot runs real TRL ``GRPOTrainer`` runs (CPU is fine: about a minute on 2 cores): it
brackets the learning rate at which runs collapse and measures the stiffness K, then
``result.model()`` predicts the largest stable learning rate at other settings.

    python examples/pilot_builtin.py [--planned-steps 150]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

from advisor.pilot import run_pilot
from advisor.tasks import builtin_task
from advisor.tasks import default_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--planned-steps", type=int, default=150)
    parser.add_argument("--output-dir", default=None)
    a = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)

    task = builtin_task()  # warm start built and cached on first use (~40 s)
    print(f"tiny Llama: {task.n_parameters} parameters, base success {task.base_success:.2f}")
    out = a.output_dir or tempfile.mkdtemp(prefix="grpo-pilot-")
    args = default_config(f"{out}/trainer", learning_rate=3e-4, max_steps=a.planned_steps)
    result = run_pilot(task.model_path, list(task.reward_funcs), task.train_dataset, args,
                       processing_class=task.tokenizer, output_dir=out)
    print(f"cost: {result.cost_steps} optimizer steps ({result.cost_seconds:.0f} s), "
          f"budget {result.budget_steps}")
    print(f"stiffness K = {result.stiffness.stiffness:.3g} +- {result.stiffness.std_error:.2g}"
          f" per unit lr (linear in lr: {result.linear})")
    low, point, high = result.edge_learning_rate
    print(f"edge: stable at lr {low:.3g}, collapsed at {high:.3g} (x* = {result.edge.rate:.3g})")
    print(f"timing: {result.seconds_per_step:.3f} s/step, "
          f"{result.seconds_per_generation:.3f} s/generation")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = result.model()
    for kref in (1, 4):
        for batch in (128, 512):
            lr = float(model.max_learning_rate(refresh_interval=kref, samples_per_step=batch))
            print(f"  steps_per_generation={kref}, {batch} completions/step: lr < {lr:.3g}")
    result.save(f"{out}/result")
    print(f"saved to {out}/result (pilot.json + history.csv)")


if __name__ == "__main__":
    main()

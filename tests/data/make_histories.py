"""Record short real GRPO runs on the built-in task and save their ``log_history`` as JSON.

Each run is a real ``trl.GRPOTrainer`` run on the built-in addition task (advisor.tasks), one
CPU thread, seed 0. The files feed tests/test_diagnostics.py. Re-run with
``nice -n 10 python tests/data/make_histories.py [name ...]`` (about 10-40 s per run on CPU).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a checkout without installing

# 16 prompts x G = 8 completions per optimizer step, on-policy (pinned, whatever the defaults)
_BATCH: dict[str, Any] = dict(per_device_train_batch_size=128, steps_per_generation=1, seed=0)
# name -> (GRPOConfig overrides on top of advisor.tasks.default_config, what it provokes)
RUNS: dict[str, tuple[dict[str, Any], str]] = {
    "healthy": (dict(learning_rate=3e-4, max_steps=120, beta=0.04, **_BATCH),
                "AdamW well below its edge, KL to the warm start: rises and saturates"),
    "collapse": (dict(learning_rate=3e-3, max_steps=60, **_BATCH),
                 "AdamW 10x the healthy learning rate: the reward collapses within a few steps"),
    "degenerate": (dict(learning_rate=3e-4, num_generations=2, max_steps=80, **_BATCH),
                   "G = 2: most groups have equal rewards (zero advantage)"),
    "entropy": (dict(learning_rate=1.5e-3, max_steps=100, **_BATCH),
                "AdamW at 5x the healthy learning rate: entropy collapses, reward plateaus early"),
}


def record(name: str) -> dict[str, Any]:
    """Run one configuration and return ``{"name", "config", "base_success", "log_history"}``."""
    import torch
    import transformers
    from trl import GRPOTrainer

    from advisor.knobs import knobs_from_config
    from advisor.tasks import builtin_task
    from advisor.tasks import default_config

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    overrides, purpose = RUNS[name]
    task = builtin_task()
    with tempfile.TemporaryDirectory() as out:
        cfg = default_config(out, **overrides)
        trainer = GRPOTrainer(model=task.model_path, processing_class=task.tokenizer,
                              reward_funcs=list(task.reward_funcs), args=cfg,
                              train_dataset=task.train_dataset)
        t0 = time.perf_counter()
        error = None
        try:
            trainer.train()
        except Exception as exc:  # a diverging run may raise; the history up to it is kept
            error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
    history = [{k: v for k, v in row.items()} for row in trainer.state.log_history]
    knobs = knobs_from_config(cfg).to_params()  # the effective knobs, for the tests
    return {"name": name, "purpose": purpose, "config": overrides, "knobs": knobs,
            "base_success": task.base_success, "wall_s": round(wall, 1), "error": error,
            "log_history": history}


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.6g}") if obj == obj and abs(obj) != float("inf") else obj
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def main(names: list[str]) -> None:
    for name in names or list(RUNS):
        run = record(name)
        path = HERE / f"history_{name}.json"
        path.write_text(json.dumps(_round(run), indent=0))
        rewards = [r["reward"] for r in run["log_history"] if "reward" in r]
        print(f"{name}: {len(rewards)} steps, {run['wall_s']} s, reward first 5 "
              f"{sum(rewards[:5]) / 5:.3f} last 10 {sum(rewards[-10:]) / 10:.3f} -> {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])

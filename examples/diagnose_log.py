"""Diagnose a GRPO run from its logs, then watch a live run with AdvisorCallback.

Usage:
    python examples/diagnose_log.py [LOGFILE]        # a saved log_history / trainer_state.json
    python examples/diagnose_log.py --train          # also a short live run on the built-in task
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from advisor.diagnostics import diagnose


HERE = Path(__file__).resolve().parent
DEFAULT_LOG = HERE.parent / "tests" / "data" / "history_entropy.json"

# 1. Offline: any TRL log_history (list of dicts, trainer_state.json, .jsonl or .csv).
args = [a for a in sys.argv[1:] if a != "--train"]
log = Path(args[0]) if args else DEFAULT_LOG
report = diagnose(log)
print(report.to_table())
for finding in report.findings:
    print(f"{finding.mode}: evidence {dict(finding.evidence)}")
    print(f"  -> GRPOConfig changes: {dict(finding.config_changes)}")

# 2. Live: the same detectors inside GRPOTrainer.train(); stops on a collapse (opt-in).
if "--train" in sys.argv:
    from trl import GRPOTrainer

    from advisor.diagnostics import AdvisorCallback
    from advisor.tasks import builtin_task
    from advisor.tasks import default_config

    task = builtin_task()  # tiny warm-started Llama + addition reward (built once, cached)
    callback = AdvisorCallback(stop_on_collapse=True, start_reward=task.base_success)
    with tempfile.TemporaryDirectory() as out:
        # 10x the healthy learning rate: the reward collapses within a few steps
        config = default_config(out, learning_rate=3e-3, max_steps=40)
        trainer = GRPOTrainer(model=task.model_path, processing_class=task.tokenizer,
                              reward_funcs=list(task.reward_funcs), args=config,
                              train_dataset=task.train_dataset, callbacks=[callback])
        trainer.train()
    print(f"stopped at step {callback.stopped_at} of {config.max_steps}")
    print(diagnose(trainer.state.log_history, start_reward=task.base_success).to_table())

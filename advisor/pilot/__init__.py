"""Real GRPO pilot: measure stiffness, the stability edge and timing with TRL's ``GRPOTrainer``.

The closed form predicts the mean-reward trajectory of stable runs but not where real runs
collapse (10-50x lower, set by gradient noise; real-trl-findings.md sections 4 and 6), so the
pilot **measures** the edge on the user's own model, task, batch and group size, within a
budget of optimizer steps (default 3 x the planned run) that it plans up front and never
exceeds:

1. **Edge scan** (on-policy, the user's optimizer, batch and group size): a ladder of
   learning rates ``lr_ratio`` apart, started at ``lr_ratio`` x the user's lr and walked down
   to the first stable level (or up while stable), then ``n_refine`` bisections in log lr, all
   with short runs (``scan_steps``) of the first seed. The stable end is then confirmed with
   every seed (>= 2) over the full horizon (``horizon_steps``, default the planned steps) and
   moved down while any seed collapses. Every run stops as soon as the shared instability rule
   fires (`advisor.instability.InstabilityDetector`), so collapsed runs cost a few steps and
   most of the budget goes to the long runs next to the edge (successive-halving style).
2. **Stiffness** from the same runs: the confirmed full-horizon curves and the stable scan
   curves at or below the confirmed stable end (two or more learning rates: the rate must be
   linear in lr and the result says when it is not), plus one curve at lo/2 on the budget left
   over, in heavy-ball units (SGD: rate x (1 - mu) / lr; AdamW: no beta1 factor), via
   `advisor.stiffness.estimate_stiffness`.
3. **Timing**: seconds per optimizer step with and without generation, and the fixed cost of
   one generate call from a short run with ``steps_per_generation = 4``
   (`PilotResult.timing` gives `advisor.refresh.RefreshTiming`).
4. The edge in the dimensionless rate ``x = lr K / (1 - mu_hb)`` as an
   `advisor.stability.EdgeEstimate`; optionally a second scan at another samples per step or
   refresh interval measures the exponents of the calibration law.

Every finished run is kept in ``output_dir/runs`` (JSON + CSV), so an interrupted pilot
resumes where it stopped. torch, transformers and trl are imported inside functions.

Modules: ``_result`` (PilotRun, PilotResult, files), ``_checks`` (input checks), ``_runner``
(one TRL run), ``_scan`` (budgeted edge scan), ``_stiffness``, ``_timing``, ``_run``
(`run_pilot`), ``_objective`` (`make_objective`), ``_trial_callback`` (`trial_callback`: the
same reporting for an objective that builds its own ``GRPOTrainer``).
"""

from __future__ import annotations

from advisor.instability import label_run
from advisor.pilot._checks import RewardFunctionError
from advisor.pilot._checks import _wrap_reward
from advisor.pilot._objective import make_objective
from advisor.pilot._result import PilotResult
from advisor.pilot._result import PilotRun
from advisor.pilot._run import run_pilot
from advisor.pilot._runner import _carried_rewards
from advisor.pilot._trial_callback import trial_callback


__all__ = ["PilotResult", "PilotRun", "RewardFunctionError", "make_objective", "run_pilot",
           "trial_callback"]
_PRIVATE = (label_run, _wrap_reward, _carried_rewards)  # re-exported for tests

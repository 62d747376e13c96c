"""The one-command demo: a shipped study file, its pilot, its report and a short sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from advisor.study_file import StudyFileError
from advisor.study_file import load_study_file
from advisor.workflow._pilot import run_study_pilot
from advisor.workflow._sweep import SweepSummary
from advisor.workflow._sweep import run_study_sweep


DEMO_STUDIES: dict[str, str] = {
    "tiny": """\
name = "demo-tiny"
description = "grpo-advisor demo: AdamW on the built-in tiny addition task (real TRL, CPU)."
[objective]
kind = "builtin:tiny"
[search_space.learning_rate]
type = "float"
low = 1e-5
high = 1e-1
log = true
[search_space.steps_per_generation]
type = "int"
low = 1
high = 8
[fixed]
optim = "adamw_torch"
[pilot]
seeds = [0, 1]
[budget]
n_trials = 8
steps = 60
""",
    "bandit": """\
name = "demo-bandit"
description = "grpo-advisor demo: heavy-ball SGD on the exact 2-arm GRPO bandit."
[objective]
kind = "builtin:bandit"
problem = "reference"
[search_space.learning_rate]
type = "float"
low = 0.01
high = 100.0
log = true
[search_space.momentum]
type = "float"
low = 0.0
high = 0.9
[search_space.steps_per_generation]
type = "int"
low = 1
high = 16
[fixed]
optim = "sgd"
[budget]
n_trials = 30
steps = 400
""",
}


def run_demo(directory: str | Path, *, objective: Literal["tiny", "bandit"] = "tiny",
             n_trials: int | None = None, progress: bool = True) -> SweepSummary:
    """The main job on a fresh machine: pilot, report, a short guided sweep, summary.

    Writes ``demo-<objective>.toml`` into ``directory`` and keeps the pilot, the SQLite study
    and the report beside it (rerunning reuses the pilot and resumes the sweep: it runs only
    the trials still missing; pass a larger ``n_trials`` to add more).

    Args:
        directory: Working folder (created if its parent exists).
        objective: ``"tiny"`` (real TRL GRPO on CPU) or ``"bandit"`` (no TRL; about a minute).
        n_trials: Sweep trials (default: the demo study's budget).
        progress: Progress bars.

    Returns:
        The sweep summary; ``report_path`` is the HTML report.
    """
    out = Path(directory)
    if objective not in DEMO_STUDIES:
        raise StudyFileError(f"`objective` must be one of {sorted(DEMO_STUDIES)}, got "
                             f"{objective!r}.")
    if not out.parent.is_dir():
        raise StudyFileError(f"the demo folder's parent {str(out.parent)!r} does not exist. "
                             "Create it first, or pass another --output.")
    if out.exists() and not out.is_dir():
        raise StudyFileError(f"the demo folder {str(out)!r} is a file. Pass --output with a "
                             "folder (it is created if missing).")
    out.mkdir(exist_ok=True)
    path = out / f"demo-{objective}.toml"
    path.write_text(DEMO_STUDIES[objective], encoding="utf-8")
    study = load_study_file(path)
    pilot = run_study_pilot(study, progress=progress)
    print(pilot.summary(), flush=True)
    print(f"pre-sweep report: {pilot.report(study).write(study.report_dir)['html']}",
          flush=True)
    return run_study_sweep(study, n_trials=n_trials, progress=progress)

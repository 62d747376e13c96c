"""The sweep of a study: guided (or plain) Optuna workers on the shared storage, a summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from advisor.instability import trial_collapsed
from advisor.study_file import StudyFile
from advisor.study_file import StudyFileError
from advisor.study_file import load_study_file
from advisor.workflow._objective import make_study_objective
from advisor.workflow._pilot import StudyPilot
from advisor.workflow._pilot import load_study_pilot
from advisor.workflow._storage import _redact
from advisor.workflow._storage import _storage
from advisor.workflow._storage import load_optuna_study


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep produced.

    Attributes:
        study_name: Optuna study name.
        storage: Storage URL (password redacted).
        n_finished: Finished trials in the study (all workers, all sessions).
        n_complete: Completed trials.
        n_pruned: Pruned trials.
        n_collapsed: Trials that collapsed (``advisor:collapsed``, or failed).
        best_value: Best objective value (``None`` without a completed trial).
        best_params: Its parameters.
        report_path: The updated HTML report (``None`` if not written).
        seconds: Wall time of this sweep.
        fixed: The study's fixed knobs (shown with the best parameters).
    """

    study_name: str
    storage: str
    n_finished: int
    n_complete: int
    n_pruned: int
    n_collapsed: int
    best_value: float | None
    best_params: Mapping[str, Any]
    report_path: Path | None
    seconds: float
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def collapse_rate(self) -> float:
        """Collapsed / finished trials (0 without trials)."""
        return self.n_collapsed / self.n_finished if self.n_finished else 0.0

    def explain(self) -> str:
        """A short plain-text summary."""
        lines = [f"study {self.study_name!r} in {self.storage}: {self.n_finished} finished "
                 f"trials ({self.n_complete} complete, {self.n_pruned} pruned, "
                 f"{self.n_collapsed} collapsed: collapse rate {self.collapse_rate:.0%}), "
                 f"{self.seconds:.0f} s"]
        if self.best_value is not None:
            lines.append(f"best value {self.best_value:.4g} with")
            from advisor.knobs import to_grpo_kwargs

            lines.append("  GRPOConfig(" + ", ".join(
                f"{k}={v!r}" for k, v in to_grpo_kwargs(
                    {**self.fixed, **self.best_params}).items()) + ")")
        if self.report_path is not None:
            lines.append(f"report updated: {self.report_path}")
        return "\n".join(lines)


def _sampler_and_pruner(study: StudyFile, pilot: StudyPilot | None, guided: bool,
                        seed: int | None) -> tuple[Any, Any]:
    import optuna

    if not guided or pilot is None:
        return (optuna.samplers.TPESampler(seed=seed),
                optuna.pruners.MedianPruner(n_warmup_steps=max(1, study.budget.steps // 5)))
    from advisor.pruner import TrajectoryPruner
    from advisor.sampler import StableRegionSampler

    defaults = pilot.knob_defaults(study)
    sampler = StableRegionSampler(model=pilot.model(), search_space=study.distributions(),
                                  defaults=defaults, seed=seed)
    statistic = "mean" if study.objective == "builtin:bandit" else "final"
    pruner = TrajectoryPruner(n_steps=study.budget.steps, statistic=statistic,
                              n_warmup_steps=10, n_startup_trials=2, defaults=defaults)
    return sampler, pruner


def _worker(path: str, storage: str | None, n_trials: int, guided: bool, seed: int,
            progress: bool) -> None:
    """One sweep worker (also the body of the single-process sweep)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study_file(path)
    pilot = load_study_pilot(study) if guided else None
    sampler, pruner = _sampler_and_pruner(study, pilot, guided, seed)
    ostudy = optuna.create_study(study_name=study.name, storage=_storage(study, storage),
                                 sampler=sampler, pruner=pruner, direction="maximize",
                                 load_if_exists=True)
    ostudy.optimize(make_study_objective(study), n_trials=n_trials,
                    timeout=study.budget.timeout, show_progress_bar=progress)


def run_study_sweep(study: StudyFile, *, storage: str | None = None, n_trials: int | None = None,
                    n_workers: int = 1, guided: bool = True, progress: bool = True,
                    write_report: bool = True) -> SweepSummary:
    """Run the advisor-guided sweep of ``study`` and update its report.

    Args:
        study: A study loaded from a file (workers reload it by path).
        storage: Storage URL overriding the study's (e.g. PostgreSQL for many machines).
        n_trials: Trials in total over all workers (default ``budget.n_trials``).
        n_workers: Worker processes sharing the storage.
        guided: Use ``StableRegionSampler`` + ``TrajectoryPruner`` (needs the pilot);
            ``False`` runs plain TPE + MedianPruner.
        progress: Progress bar.
        write_report: Rewrite the feasibility report with the finished trials.

    Raises:
        StudyFileError: No pilot (guided), unreachable storage, or a study without a file.
    """
    import time

    if study.path is None:
        raise StudyFileError("`study.path` must be set: sweep workers reload the study file.")
    if n_workers < 1:
        raise StudyFileError(f"`n_workers` must be an integer >= 1, got {n_workers!r}.")
    total = n_trials or study.budget.n_trials
    pilot = load_study_pilot(study) if guided else None  # fail early, before any worker
    _storage(study, storage)  # fail early on an unreachable database
    t0 = time.perf_counter()
    if n_workers == 1:
        _worker(str(study.path), storage, total, guided, 0, progress)
    else:
        _run_workers(study, storage, total, n_workers, guided, progress)
    ostudy = load_optuna_study(study, storage=storage)
    report_path = None
    if write_report and pilot is not None:
        report_path = pilot.report(study, optuna_study=ostudy).write(study.report_dir)["html"]
    return _summarise(study, storage, ostudy, report_path, time.perf_counter() - t0)


def _run_workers(study: StudyFile, storage: str | None, total: int, n_workers: int,
                 guided: bool, progress: bool) -> None:
    import multiprocessing as mp

    shares = [total // n_workers + (i < total % n_workers) for i in range(n_workers)]
    ctx = mp.get_context("spawn")  # torch/trl are not fork-safe
    procs = [ctx.Process(target=_worker, args=(str(study.path), storage, n, guided, 1000 + i,
                                               False))
             for i, n in enumerate(shares) if n > 0]
    before = _n_finished(study, storage)
    for p in procs:
        p.start()
    if progress:
        _poll_progress(study, storage, total, procs, before)
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise StudyFileError(f"{len(bad)} of {len(procs)} sweep workers failed (exit codes "
                             f"{bad}); rerun with --n-workers 1 --debug to see the error.")


def _n_finished(study: StudyFile, storage: str | None) -> int:
    ostudy = load_optuna_study(study, storage=storage, must_exist=False)
    if ostudy is None:
        return 0
    return sum(t.state.is_finished() for t in ostudy.get_trials(deepcopy=False))


def _poll_progress(study: StudyFile, storage: str | None, total: int, procs: list[Any],
                   before: int) -> None:
    """One progress bar for all workers, read from the shared storage every second."""
    import time

    from tqdm.auto import tqdm

    with tqdm(total=total, desc=f"{len(procs)} workers", unit="trial") as bar:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            bar.update(min(total, _n_finished(study, storage) - before) - bar.n)


def _summarise(study: StudyFile, storage: str | None, ostudy: Any, report_path: Path | None,
               seconds: float) -> SweepSummary:
    from optuna.trial import TrialState

    done = [t for t in ostudy.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    collapsed = [t for t in done
                 if trial_collapsed(t.user_attrs) or t.state == TrialState.FAIL]
    best = max(complete, key=lambda t: t.value) if complete else None
    return SweepSummary(study_name=study.name, storage=_redact(storage or study.storage),
                        n_finished=len(done), n_complete=len(complete),
                        n_pruned=sum(t.state == TrialState.PRUNED for t in done),
                        n_collapsed=len(collapsed),
                        best_value=None if best is None else float(best.value),
                        best_params={} if best is None else dict(best.params),
                        report_path=report_path, seconds=seconds, fixed=dict(study.fixed))

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
from advisor.workflow._interrupt import _Interrupt
from advisor.workflow._interrupt import _QuietInterrupt
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
        n_collapsed: Trials that collapsed (`advisor.instability.trial_collapsed`).
        best_value: Best objective value (``None`` without a completed trial).
        best_params: Its parameters.
        report_path: The updated HTML report (``None`` if not written).
        seconds: Wall time of this sweep.
        fixed: The study's fixed knobs (shown with the best parameters).
        n_failed: Trials that raised or were interrupted (state FAIL): not collapses, and
            not counted towards ``n_trials``, so a rerun replaces them.
        n_run: Trials this call ran (0 when the study already had ``n_trials``).
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
    n_failed: int = 0
    n_run: int | None = None

    @property
    def collapse_rate(self) -> float:
        """Collapsed / finished trials (0 without trials)."""
        return self.n_collapsed / self.n_finished if self.n_finished else 0.0

    def explain(self) -> str:
        """A short plain-text summary."""
        failed = f", {self.n_failed} failed or interrupted" if self.n_failed else ""
        ran = "" if self.n_run is None else f"; {self.n_run} run now"
        lines = [f"study {self.study_name!r} in {self.storage}: {self.n_finished} finished "
                 f"trials ({self.n_complete} complete, {self.n_pruned} pruned{failed}; "
                 f"{self.n_collapsed} collapsed: collapse rate {self.collapse_rate:.0%}), "
                 f"{self.seconds:.0f} s{ran}"]
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
    model = pilot.model()
    sampler = StableRegionSampler(model=model, search_space=study.distributions(),
                                  defaults=defaults, seed=seed)
    statistic = "mean" if study.objective == "builtin:bandit" else "final"
    settings = dict(n_steps=study.budget.steps, statistic=statistic, n_warmup_steps=10,
                    n_startup_trials=2, defaults=defaults)
    try:  # the pilot's K sets each trial's expected rate (a prior of the trajectory fits)
        pruner = TrajectoryPruner(stiffness=model, **settings)
    except (TypeError, ValueError) as exc:  # e.g. no finite standard error: fit without it
        import warnings

        from advisor.exceptions import AdvisorWarning

        warnings.warn(f"the pruner's trajectory fits go without the pilot's stiffness ({exc}).",
                      AdvisorWarning, stacklevel=2)
        pruner = TrajectoryPruner(**settings)
    return sampler, pruner


def _counted(ostudy: Any) -> int:
    """Trials that count towards the budget: COMPLETE or PRUNED (a FAIL is run again)."""
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               for t in ostudy.get_trials(deepcopy=False))


def _child_worker(path: str, storage: str | None, n_trials: int, guided: bool,
                  seed: int) -> None:
    """A worker process of a multi-worker sweep.

    It ignores the terminal's Ctrl-C: the parent forwards one SIGTERM on Ctrl-C (and on its
    own SIGINT, e.g. from `timeout -s INT`, which reaches the parent only), and the worker
    stops as gracefully as the single-process sweep, then exits quietly with 130.
    """
    import signal
    import sys
    import warnings

    from advisor.workflow._console import plain_warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a spawned process starts with Python's defaults: print caveats as the CLI does
    warnings.formatwarning = plain_warnings(warnings.formatwarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        _worker(path, storage, n_trials, guided, seed, False, signum=signal.SIGTERM)
    except KeyboardInterrupt:
        sys.exit(130)


def _worker(path: str, storage: str | None, n_trials: int, guided: bool, seed: int,
            progress: bool, *, signum: int | None = None) -> None:
    """One sweep worker (also the body of the single-process sweep): runs ``n_trials``;
    ``signum`` (default SIGINT) stops it gracefully."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet = _QuietInterrupt()
    # a logger's filters see only its own records (not its children's): attach it where
    # Optuna logs a failed trial
    logger = optuna.logging.get_logger("optuna.study._optimize")
    logger.addFilter(quiet)
    try:
        study = load_study_file(path)
        pilot = load_study_pilot(study) if guided else None
        sampler, pruner = _sampler_and_pruner(study, pilot, guided, seed)
        ostudy = optuna.create_study(study_name=study.name, storage=_storage(study, storage),
                                     sampler=sampler, pruner=pruner, direction="maximize",
                                     load_if_exists=True)
        with _Interrupt(signum, quiet=signum is not None) as stop:
            objective = stop.objective(make_study_objective(study))
            stop.in_loop = True
            ostudy.optimize(objective, n_trials=n_trials, timeout=study.budget.timeout,
                            show_progress_bar=progress, callbacks=[stop.callback])
            stop.in_loop = False
        if stop.requested:
            raise KeyboardInterrupt
    finally:
        logger.removeFilter(quiet)


def run_study_sweep(study: StudyFile, *, storage: str | None = None, n_trials: int | None = None,
                    n_workers: int = 1, guided: bool = True, progress: bool = True,
                    write_report: bool = True) -> SweepSummary:
    """Run the advisor-guided sweep of ``study`` and update its report.

    The sweep resumes: ``n_trials`` is the study's total, so a rerun after an interruption (or
    on another machine sharing the storage) runs only the trials still missing. Completed and
    pruned trials count; failed or interrupted ones are run again.

    Args:
        study: A study loaded from a file (workers reload it by path).
        storage: Storage URL overriding the study's (e.g. PostgreSQL for many machines).
        n_trials: Finished trials the study should have, over all workers and runs (default
            ``budget.n_trials``); raise it to add trials to a finished study.
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
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise StudyFileError(f"`n_workers` must be an integer >= 1, got {n_workers!r}.")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int)
                                 or n_trials < 1):
        raise StudyFileError(f"`n_trials` must be an integer >= 1, got {n_trials!r}.")
    total = study.budget.n_trials if n_trials is None else n_trials
    pilot = load_study_pilot(study) if guided else None  # fail early, before any worker
    _storage(study, storage)  # fail early on an unreachable database
    existing = load_optuna_study(study, storage=storage, must_exist=False)
    _check_direction(study, existing, storage)
    done = 0 if existing is None else _counted(existing)
    todo = max(0, total - done)
    t0 = time.perf_counter()
    if todo and n_workers == 1:  # the seed moves on with the study, so a rerun explores anew
        _worker(str(study.path), storage, todo, guided, done, progress)
    elif todo:
        _run_workers(study, storage, todo, n_workers, guided, progress, seed=1000 + done)
    ostudy = load_optuna_study(study, storage=storage)
    if ostudy is None:  # nothing to run and nothing stored: impossible with total >= 1
        raise StudyFileError(f"no Optuna study {study.name!r} was created.")
    report_path = None
    if write_report and pilot is not None:
        report_path = pilot.report(study, optuna_study=ostudy).write(study.report_dir)["html"]
    return _summarise(study, storage, ostudy, report_path, time.perf_counter() - t0, todo)


def _check_direction(study: StudyFile, ostudy: Any, storage: str | None) -> None:
    """Optuna loads an existing study whatever direction it was created with: a study made by
    hand (default: minimize) would then drive the sampler to the lowest reward."""
    import optuna

    if ostudy is None:
        return
    if ostudy.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        dirs = ", ".join(d.name.lower() for d in ostudy.directions)
        raise StudyFileError(
            f"the Optuna study {study.name!r} in {_redact(storage or study.storage)!r} was "
            f"created to {dirs}, but the sweep maximizes the reward. Use another study name "
            "(`name` in the study file) or another storage, or delete that study.")


def _run_workers(study: StudyFile, storage: str | None, total: int, n_workers: int,
                 guided: bool, progress: bool, *, seed: int = 1000) -> None:
    import multiprocessing as mp

    shares = [total // n_workers + (i < total % n_workers) for i in range(n_workers)]
    ctx = mp.get_context("spawn")  # torch/trl are not fork-safe
    procs = [ctx.Process(target=_child_worker,
                         args=(str(study.path), storage, n, guided, seed + 100 * i))
             for i, n in enumerate(shares) if n > 0]
    before = _n_finished(study, storage)
    for p in procs:
        p.start()
    try:
        if progress:
            _poll_progress(study, storage, total, procs, before)
        for p in procs:
            p.join()
    except KeyboardInterrupt:  # stop every worker once, gracefully, and wait for it
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker's graceful stop
        for p in procs:
            p.join(timeout=120)
            if p.is_alive():  # stuck: give up on it (its trial may stay RUNNING)
                p.kill()
        raise
    bad = [p.exitcode for p in procs if p.exitcode not in (0, 130)]
    if any(p.exitcode == 130 for p in procs):  # a worker was stopped by a signal
        raise KeyboardInterrupt
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
               seconds: float, n_run: int | None = None) -> SweepSummary:
    from optuna.trial import TrialState

    done = [t for t in ostudy.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    # the shared rule (advisor.instability): a crash or a Ctrl-C is a failure, not a collapse
    collapsed = [t for t in done if trial_collapsed(t.user_attrs)]
    best = max(complete, key=lambda t: t.value) if complete else None
    return SweepSummary(study_name=study.name, storage=_redact(storage or study.storage),
                        n_finished=len(done), n_complete=len(complete),
                        n_pruned=sum(t.state == TrialState.PRUNED for t in done),
                        n_collapsed=len(collapsed),
                        best_value=None if best is None else float(best.value),
                        best_params={} if best is None else dict(best.params),
                        report_path=report_path, seconds=seconds, fixed=dict(study.fixed),
                        n_failed=sum(t.state == TrialState.FAIL for t in done), n_run=n_run)

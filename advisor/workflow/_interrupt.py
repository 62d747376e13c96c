"""Stopping a sweep on Ctrl-C (or a worker on SIGTERM) without breaking its storage.

A KeyboardInterrupt raised at an arbitrary point can land inside a storage write. On SQLite that
left a connection holding the file's write lock while the next write waited for it: the worker
hung, and its trial stayed RUNNING forever. So the first signal only asks to stop, and the
trial stops at its next safe point: a call of ``trial.report``, ``should_prune``, ``suggest_*``
or ``set_user_attr`` (before the call reaches the storage), or the start of the next trial.
Optuna then marks the trial FAIL, tagged ``advisor:interrupted`` (not a collapse; a rerun runs
it again). A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


_SAFE_POINTS = frozenset({"report", "should_prune", "suggest_float", "suggest_int",
                          "suggest_categorical", "set_user_attr"})


class _QuietInterrupt(logging.Filter):
    """Drops Optuna's traceback for a trial stopped by Ctrl-C (the CLI says it in one line)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KeyboardInterrupt) or "KeyboardInterrupt" in record.getMessage():
            self.seen = True
            return False
        return not (self.seen and record.getMessage().endswith("failed with value None."))


class _SafeTrial:
    """The trial as the objective sees it: stops at a safe point once a stop is asked."""

    def __init__(self, trial: Any, stop: _Interrupt) -> None:
        self._trial = trial
        self._stop = stop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if name not in _SAFE_POINTS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._stop.check()
            return attr(*args, **kwargs)

        return call


class _Interrupt:
    """Installs the handler of ``signum`` (default SIGINT) for the optimize loop."""

    def __init__(self, signum: int | None = None, *, quiet: bool = False) -> None:
        import signal

        self.quiet = quiet  # a worker process: its parent speaks for it
        self.requested = False
        self.in_loop = False
        self._signum = signal.SIGINT if signum is None else signum
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # signals need it
            self._previous = signal.signal(self._signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._previous is not None:
            signal.signal(self._signum, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.in_loop:  # no trial yet (loading): nothing to protect
            raise KeyboardInterrupt
        if self.requested:  # asked twice: exit now (SQLite rolls the journal back on reopen)
            print("grpo-advisor: stopped at once; a trial may stay RUNNING", file=sys.stderr,
                  flush=True)
            os._exit(130)
        self.requested = True
        if not self.quiet:
            print("grpo-advisor: stopping at the trial's next safe point (Ctrl-C again to "
                  "stop at once)", file=sys.stderr, flush=True)

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked (call only at a safe point)."""
        if self.requested:
            raise KeyboardInterrupt

    def objective(self, objective: Any) -> Any:
        """``objective`` with safe points, tagging a stopped trial ``advisor:interrupted``."""
        def run(trial: Any) -> Any:
            try:
                self.check()  # asked to stop while this trial was being set up
                return objective(_SafeTrial(trial, self))
            except KeyboardInterrupt:
                trial.set_user_attr("advisor:interrupted", True)
                raise

        return run

    def callback(self, study: Any, trial: Any) -> None:
        """Optuna callback: stop the loop after a trial finished while a stop was asked."""
        if self.requested:
            study.stop()

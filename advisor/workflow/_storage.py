"""The Optuna storage of a study: open it with a clear error, load the study from it."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from advisor.study_file import StudyFile
from advisor.study_file import StudyFileError
from advisor.study_file import check_storage_url


def _storage(study: StudyFile, storage: str | None) -> Any:
    """An Optuna RDB storage for the study's (or the given) URL, with a clear error if down."""
    import optuna

    url = storage or study.storage
    check_storage_url(url, key="--storage" if storage else "storage.url")
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                              **_heartbeat(url))
    except Exception as exc:  # sqlalchemy raises many types: connection, driver, URL
        reason = " ".join(str(exc).split()).rstrip(".")[:300]
        if isinstance(exc, ImportError) or "Failed to import DB access module" in reason:
            fix = _driver_fix(url)
        else:
            fix = ("Check that the database server is running and reachable (host, port, user, "
                   "password), or use the default SQLite storage.")
        raise StudyFileError(
            f"cannot open the Optuna storage {_redact(url)!r}: {reason}. {fix}") from None


def _driver_fix(url: str) -> str:
    """How to get the missing database driver of ``url``."""
    import importlib.util

    scheme = url.split("://")[0]
    if scheme == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
        # SQLAlchemy 2.1 loads psycopg (3) for a bare postgresql:// URL; the project's
        # `postgres` extra installs psycopg2
        return ("A bare postgresql:// URL needs the psycopg (3) driver, which is not installed; "
                "psycopg2 is: write postgresql+psycopg2://" + _redact(url).split("://", 1)[1]
                + " (or pip install psycopg).")
    driver = _DRIVERS.get(scheme.split("+")[-1], "its SQLAlchemy driver")
    return (f"Install the database driver ({driver}) in this environment, or use the default "
            "SQLite storage.")


# pip packages of the drivers SQLAlchemy loads for the usual URL schemes
_DRIVERS = {"postgresql": "pip install psycopg", "psycopg2": "pip install psycopg2-binary",
            "psycopg": "pip install psycopg", "mysql": "pip install mysqlclient",
            "pymysql": "pip install pymysql", "mysqldb": "pip install mysqlclient"}
# A worker killed without a chance to clean up (SIGKILL, a lost machine) leaves its trial
# RUNNING; with a heartbeat the next sweep on the storage marks it FAIL after the grace
# period instead of counting it as running forever (Optuna's fail_stale_trials).
_HEARTBEAT_S = 30
_GRACE_S = 120


def _heartbeat(url: str) -> dict[str, Any]:
    # Not on SQLite: there the heartbeat thread's writes can time out on the file lock
    # ("database is locked") while a reader holds it, and Optuna then fails the whole trial.
    # A SQLite sweep runs on one machine, where Ctrl-C is handled without leaving a trial
    # RUNNING (advisor.workflow._sweep._Interrupt).
    if url.startswith("sqlite"):
        return {}
    return {"heartbeat_interval": _HEARTBEAT_S, "grace_period": _GRACE_S}


def _engine_kwargs(url: str) -> dict[str, Any]:
    # PostgreSQL: fail in seconds instead of the driver's default (minutes) when unreachable
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 5}}
    # SQLite: several workers (and `report`) share one file lock; Python's default 5 s wait
    # ran out on 2 loaded cores ("database is locked") and Optuna then lost the trial
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {}


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def load_optuna_study(study: StudyFile, *, storage: str | None = None,
                      must_exist: bool = True) -> Any:
    """The Optuna study of ``study`` from its storage (``None`` if absent and not required).

    Raises:
        StudyFileError: The storage is unreachable, or the study is missing and required.
    """
    import optuna

    url = storage or study.storage
    if not must_exist and url.startswith("sqlite:///") and not Path(url[10:]).exists():
        return None
    if must_exist and url.startswith("sqlite:///") and not url.endswith(":memory:") and not Path(
            url[10:]).exists():
        raise StudyFileError(f"no Optuna storage at {url!r}: the SQLite file does not exist. "
                             "Check the path, or run `grpo-advisor sweep` first.")
    store = _storage(study, storage)
    try:
        return optuna.load_study(study_name=study.name, storage=store)
    except KeyError:
        if must_exist:
            raise StudyFileError(f"no Optuna study {study.name!r} in {_redact(url)!r}. Run "
                                 "`grpo-advisor sweep` first.") from None
        return None

"""The Optuna storage of a study: open it with a clear error, load the study from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from advisor.study_file import StudyFile
from advisor.study_file import StudyFileError
from advisor.study_file import check_storage_url


def _storage(study: StudyFile, storage: str | None) -> Any:
    """An Optuna RDB storage for the study's (or the given) URL, with a clear error if down."""
    import optuna

    url = storage or study.storage
    check_storage_url(url)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:  # sqlalchemy raises many types: connection, driver, URL
        reason = " ".join(str(exc).split())[:300]
        raise StudyFileError(
            f"cannot open the Optuna storage {_redact(url)!r}: {reason}. Check that the "
            "database server is running and reachable (host, port, user, password), or use "
            "the default SQLite storage.") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # PostgreSQL: fail in seconds instead of the driver's default (minutes) when unreachable
    return {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}


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
    store = _storage(study, storage)
    try:
        return optuna.load_study(study_name=study.name, storage=store)
    except KeyError:
        if must_exist:
            raise StudyFileError(f"no Optuna study {study.name!r} in {_redact(url)!r}. Run "
                                 "`grpo-advisor sweep` first.") from None
        return None

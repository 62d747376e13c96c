"""Reading a TRL log history from a file, a Trainer, a TrainerState or a PilotResult."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_history(source: Any) -> list[dict[str, Any]] | Any:
    """Return the log history held by ``source`` (file, Trainer, TrainerState, PilotResult).

    Files: ``.json`` (a list of rows, or a dict with ``log_history`` as in a checkpoint's
    ``trainer_state.json``), ``.jsonl`` (one row per line) or ``.csv`` (one column per metric).
    Anything else (a list of dicts, a DataFrame, a dict of columns) is returned unchanged.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be parsed or has an unsupported extension.

    Example:
        >>> load_history({"log_history": [{"step": 1, "reward": 0.2}]})
        [{'step': 1, 'reward': 0.2}]
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source))
    for attr in ("log_history", "history"):  # TrainerState, one run
        if hasattr(source, attr) and not isinstance(source, Mapping):
            return getattr(source, attr)
    histories = getattr(source, "histories", None)  # PilotResult: name -> rows
    if isinstance(histories, Mapping) and not isinstance(source, Mapping):
        if len(histories) != 1:
            raise TypeError(f"`source` must hold one run, got a result with {len(histories)} "
                            f"runs; pass result.histories[name] (names: {sorted(histories)}).")
        return next(iter(histories.values()))
    state = getattr(source, "state", None)  # Trainer
    if state is not None and hasattr(state, "log_history"):
        return state.log_history
    if isinstance(source, Mapping) and "log_history" in source:
        return source["log_history"]
    return source


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"`source` must be an existing log file, got {str(path)!r}. "
                                "Save trainer.state.log_history with json.dump first.")
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
        if suffix == ".json":
            return load_history(json.loads(text))
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            return [{k: _csv_value(v) for k, v in r.items() if k} for r in rows]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"`source` must be a readable {suffix} log, got {str(path)!r}: {exc}. "
                         "Write trainer.state.log_history with json.dump.") from None
    raise ValueError(f"`source` must end in .json, .jsonl or .csv, got {str(path)!r}.")


def _csv_value(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value

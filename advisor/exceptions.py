"""Exceptions and warnings raised by the advisor."""

from __future__ import annotations

from typing import Any


__all__ = ["AdvisorError", "FitError", "InsufficientDataError", "AdvisorWarning"]


class AdvisorError(Exception):
    """Base class of every domain error the advisor raises."""


class FitError(AdvisorError, RuntimeError):
    """A fit did not converge.

    Attributes:
        partial: The best estimate reached before giving up (or ``None``).
    """

    def __init__(self, message: str, *, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class InsufficientDataError(AdvisorError, ValueError):
    """The data are too short or too flat to identify the requested model."""


class AdvisorWarning(UserWarning):
    """A result has a caveat the user should act on (the message states the consequence)."""

"""The trainer's two failures, by when they happen: before anything is written (exit 2) or during the run (exit 1)."""
from __future__ import annotations

__all__ = ["UsageError", "RunError"]


class UsageError(ValueError):
    """A problem with the command line, the data files or the run folder: one line, exit 2, nothing written."""


class RunError(RuntimeError):
    """The run cannot go on (diverged, disk full, loader failed); the message says what is saved."""

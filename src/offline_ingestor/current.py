"""What this process is working on right now (one pool process runs one step at a time).

The step executor calls :func:`set_current` when a step starts and :func:`clear_current`
when it ends; every log line of the process then names the file, key and step, including
lines from libraries (h5py, urllib3) that know nothing of our job, so that a crash or a
long hash can be traced to its file.
"""

from __future__ import annotations

__all__ = ["CURRENT", "clear_current", "set_current"]

#: ``{"key", "file", "step"}`` of the step in progress in this process, empty when idle.
CURRENT: dict[str, str] = {}


def set_current(key: str, file: str, step: str) -> None:
    """Record the step this process starts (called by the executor with ``step.started``)."""
    CURRENT.clear()
    CURRENT.update(key=key, file=file, step=step)


def clear_current() -> None:
    """The process is idle again."""
    CURRENT.clear()

"""What this thread of work is doing right now: per-step state in ``ContextVar``s.

One pool process runs one step at a time, a ``worker --io`` thread one step per thread, and
``ingest-now`` one step after the other: a ``ContextVar`` is right for all three (a module
global was wrong for threads). Two facts live here, each set by one owner:

* the step in progress (``key``, ``file``, ``step``): set by the step executor, and by the
  worker's task hooks around Celery's own lines; every log line then names the file, also
  lines from libraries (h5py, urllib3) that know nothing of our job;
* the write hook: the step executor's note of a SciCat write, which the SciCat client calls
  right before it sends a request that creates or changes something (it may raise to stop
  the request: another execution's write may be in flight).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

__all__ = ["announce_write", "clear_current", "current_step", "set_current", "working_on", "writes_noted_by"]

_IDLE: Mapping[str, str] = MappingProxyType({})
_STEP: ContextVar[Mapping[str, str]] = ContextVar("offline_ingestor_step", default=_IDLE)
_BEFORE_WRITE: ContextVar[Callable[[], None] | None] = ContextVar(
    "offline_ingestor_before_write", default=None
)


def current_step() -> Mapping[str, str]:
    """``{"key", "file", "step"}`` of the step in progress here; empty when idle."""
    return _STEP.get()


def set_current(key: str, file: str, step: str) -> None:
    """Record the step starting here (the worker's ``task_prerun`` hook)."""
    _STEP.set({"key": key, "file": file, "step": step})


def clear_current() -> None:
    """Nothing in progress here any more (the worker's ``task_postrun`` hook)."""
    _STEP.set(_IDLE)


@contextlib.contextmanager
def working_on(key: str, file: str, step: str) -> Iterator[None]:
    """The step in progress for the duration of the block (the step executor)."""
    token = _STEP.set({"key": key, "file": file, "step": step})
    try:
        yield
    finally:
        _STEP.reset(token)


@contextlib.contextmanager
def writes_noted_by(note: Callable[[], None]) -> Iterator[None]:
    """Call ``note`` before each SciCat write sent from within the block."""
    token = _BEFORE_WRITE.set(note)
    try:
        yield
    finally:
        _BEFORE_WRITE.reset(token)


def announce_write() -> None:
    """Tell the step's write hook a write is about to be sent (the SciCat client)."""
    note = _BEFORE_WRITE.get()
    if note is not None:
        note()

"""A pool process that died under a task: say which file, key and step it was running, and
free what it held at once (its heartbeat in Redis goes with it)."""

from __future__ import annotations

from typing import Any

import structlog
from celery import signals

from .liveness import current_heartbeat
from .running import log
from .task_context import request_fields


def _patch_worker_lost() -> None:
    """Name the file, key and step when a pool process dies under a task (main process).

    Celery logs "Task handler raised error: WorkerLostError(...)" from ``Request.on_failure``
    with no word of the task; binding the request's fields around it puts them on that line,
    and a ``worker.lost`` event says it plainly.
    """
    from billiard.exceptions import WorkerLostError
    from celery.worker.request import Request

    if getattr(Request.on_failure, "_offline_ingestor", False):
        return
    original = Request.on_failure

    def on_failure(self: Any, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)
        if not isinstance(exc, (WorkerLostError, SystemExit)):
            return original(self, exc_info, *args, **kwargs)
        fields = request_fields(self)
        child = getattr(self, "worker_pid", None)
        log.error("worker.lost", **fields, child=child, error=repr(exc))
        heartbeat = current_heartbeat()
        if isinstance(exc, WorkerLostError) and child and heartbeat is not None:
            heartbeat.bury(int(child))  # before Celery requeues the message (below)
        with structlog.contextvars.bound_contextvars(**fields):
            return original(self, exc_info, *args, **kwargs)

    on_failure._offline_ingestor = True  # type: ignore[attr-defined]
    Request.on_failure = on_failure


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    _patch_worker_lost()

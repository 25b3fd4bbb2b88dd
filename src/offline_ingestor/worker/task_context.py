"""Per-task log context: Celery's own lines about a task name its file, key and step."""

from __future__ import annotations

from typing import Any

import structlog
from celery import signals

from ..current import clear_current, set_current

__all__ = ["request_fields"]


def _step_of(task_name: str | None) -> str | None:
    return task_name.removeprefix("offline_ingestor.").replace("_", "-") if task_name else None


def request_fields(request: Any) -> dict[str, Any]:
    """``key``, ``file``, ``step`` and ``task_id`` of a Celery request (main process)."""
    args = getattr(request, "args", None) or ()
    ref = args[0] if args and isinstance(args[0], dict) else {}
    return {
        "key": ref.get("key"),
        "file": ref.get("file"),
        "step": _step_of(getattr(request, "name", None)),
        "task_id": getattr(request, "id", None),
    }


@signals.task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    # Celery's own lines about the task (received, retry, succeeded) name its file too.
    ref = args[0] if args and isinstance(args[0], dict) else {}
    set_current(
        str(ref.get("key") or ""), str(ref.get("file") or ""), _step_of(getattr(task, "name", None)) or ""
    )
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@signals.task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    clear_current()
    structlog.contextvars.clear_contextvars()

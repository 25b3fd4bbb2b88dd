"""Worker process hooks: logging, per-task log context, liveness file, metrics server, bounded stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import structlog
from celery import signals

from . import kombu_patches  # noqa: F401  (applied on import: the worker needs it)
from .logs import configure_logging

__all__ = ["touch_heartbeat"]

_HEARTBEAT_EVERY_S = 10.0


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from configuring logging; structlog does it.
    from .worker import app

    config = app.conf.get("offline_ingestor_config")
    configure_logging(
        config.logging.format if config else "auto", config.logging.logging_level if config else "INFO"
    )


@signals.task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    ref = args[0] if args and isinstance(args[0], dict) else {}
    structlog.contextvars.bind_contextvars(
        task_id=task_id, task=getattr(task, "name", None), job_id=ref.get("key"), file=ref.get("file")
    )


@signals.task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@signals.worker_shutting_down.connect
def _bound_warm_shutdown(how: str | None = None, **_: Any) -> None:
    # Sent from Celery's SIGTERM handler in the main process (worker_stop.py says why).
    from .worker import app

    config = app.conf.get("offline_ingestor_config")
    if how == "Warm" and config is not None:
        from .worker_stop import start_stop_timer

        start_stop_timer(config.queue.shutdown_grace_s)


def touch_heartbeat(path: Path) -> None:
    """Update the liveness file's mtime (a probe checks it is recent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n")


@signals.worker_ready.connect
def _start_background(**_: Any) -> None:
    from .worker import app

    config = app.conf.get("offline_ingestor_config")
    if config is None:
        return
    if config.queue.heartbeat_file:
        path = Path(config.queue.heartbeat_file)

        def beat() -> None:
            while True:
                touch_heartbeat(path)
                time.sleep(_HEARTBEAT_EVERY_S)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    if config.queue.metrics_port:
        from .metrics import start_metrics_server

        start_metrics_server(config.queue.metrics_port, config.queue.broker_url, config.queue.queue_name)

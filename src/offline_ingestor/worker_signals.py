"""Worker process hooks: logging, per-task log context, liveness file, metrics server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import structlog
from celery import signals

from . import kombu_oom, kombu_patches  # noqa: F401  (applied on import: the worker needs them)
from .logs import configure_logging

__all__ = ["flush_spool_once", "touch_heartbeat"]

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


def flush_spool_once(config: Any) -> int:
    """Enqueue what producers on this host spooled while Redis was away; requests sent."""
    from .producer import Producer
    from .spool import Spool

    spool = Spool.for_config(config)
    if spool is None or not spool.has_pending():
        return 0
    return len(Producer(config, spool=spool).flush().sent)


@signals.worker_ready.connect
def _start_spool_flusher(**_: Any) -> None:
    # Producers flush on their next call; a host whose producers went quiet (the outage was
    # at the end of a run) relies on this thread, and on `offline-ingestor spool flush`.
    from .worker import app

    config = app.conf.get("offline_ingestor_config")
    if config is None or not config.queue.spool_dir or not config.queue.spool_flush_interval_s:
        return
    every = config.queue.spool_flush_interval_s
    logger = structlog.get_logger("offline_ingestor.spool")

    def loop() -> None:
        while True:
            time.sleep(every)
            try:
                flush_spool_once(config)
            except Exception as exc:  # a bad moment must not end the thread
                logger.warning("spool.flush_failed", error=f"{type(exc).__name__}: {exc}")

    threading.Thread(target=loop, name="spool-flush", daemon=True).start()

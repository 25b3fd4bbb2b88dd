"""Worker set-up: what ``offline-ingestor worker`` and ``celery -A offline_ingestor.worker worker`` share.

Both end up in :func:`prepare_worker` (the second through ``celeryd_init``, see ``app.py``),
so a worker started either way has the same logs, secrets redaction, metrics, heartbeat and
kombu fixes. The other hooks live one concern per module (``task_context``, ``lost_workers``,
``refused_submits``, ``expected_failures``, ``heartbeat``, ``liveness``, ``spool_flusher``,
``scicat_prober``); importing them connects them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

from celery import signals

from ..logs import configure_logging, register_config_secrets, scrub_url
from .running import log, running_config

__all__ = ["json_mode", "json_say", "prepare_worker"]

_PREPARED: dict[str, Any] = {}


def prepare_worker(config: Any) -> None:
    """Everything a worker needs before Celery starts its pool (idempotent)."""
    if _PREPARED.get("config") is config:
        return
    _PREPARED["config"] = config
    os.environ["OFFLINE_INGESTOR_CONFIG"] = config.source_path or ""
    register_config_secrets(config)
    configure_logging(config.logging.format, config.logging.logging_level)
    from ..metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir()
    if json_mode(config):
        _route_celery_prints()
    from ..queue.broker_layout import migrate_broker

    migrate_broker(config.queue.broker_url, config.queue.queue_name)  # once, before consuming
    from .stop import bound_remote_shutdown, report_offline_as_idle

    bound_remote_shutdown(config.queue.shutdown_grace_s)  # `celery control shutdown`, Flower
    report_offline_as_idle()  # Flower: no abandoned step shown active on a stopped worker
    from . import (  # noqa: F401  (importing a hook module connects its hooks)
        expected_failures,
        heartbeat,
        kombu_oom,
        kombu_patches,
        liveness,
        lost_workers,
        refused_submits,
        scicat_prober,
        spool_flusher,
        task_context,
    )


def json_mode(config: Any) -> bool:
    fmt = config.logging.format if config else "auto"
    return bool(fmt == "json" or (fmt == "auto" and not sys.stderr.isatty()))


def json_say(msg: str, f: Any = None) -> None:
    """Celery's ``safe_say`` (banner-style lines: "worker: Warm shutdown (MainProcess)") as
    one JSON line. Called from signal handlers, so it takes no lock: one ``os.write``."""
    event = {
        "event": "worker.said",
        "message": scrub_url(msg.strip()),
        "level": "warning",
        "logger": "celery.apps.worker",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "process": os.getpid(),
    }
    if "shutdown" in msg:
        event["event"] = "worker.shutdown"
    with contextlib.suppress(OSError):
        os.write(2, (json.dumps(event) + "\n").encode())


def _route_celery_prints() -> None:
    """In JSON mode Celery's direct writes to the terminal become JSON lines too."""
    import celery.apps.worker as celery_worker

    celery_worker.safe_say = json_say


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from configuring logging; structlog does it.
    config = running_config()
    if config is not None:
        register_config_secrets(config)
    configure_logging(
        config.logging.format if config else "auto", config.logging.logging_level if config else "INFO"
    )


@signals.celeryd_after_setup.connect
def _log_started(sender: str = "", instance: Any = None, conf: Any = None, **_: Any) -> None:
    """What Celery's banner says, as one event (the banner is off in JSON mode)."""
    queues = getattr(getattr(instance, "app", None), "amqp", None)
    log.info(
        "worker.starting",
        hostname=sender,
        queues=sorted(queues.queues) if queues is not None else None,
        concurrency=getattr(instance, "concurrency", None),
        broker=scrub_url(str(conf.broker_url)) if conf is not None else None,
        pool=getattr(getattr(instance, "pool_cls", None), "__name__", None),
    )


@signals.worker_shutting_down.connect
def _bound_warm_shutdown(how: str | None = None, **_: Any) -> None:
    # Sent from Celery's SIGTERM handler in the main process (worker/stop.py says why).
    config = running_config()
    if how == "Warm" and config is not None:
        from .stop import start_stop_timer

        start_stop_timer(config.queue.shutdown_grace_s)

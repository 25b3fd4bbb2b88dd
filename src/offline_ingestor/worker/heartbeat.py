"""The worker's liveness file and its metrics server, started once the worker is ready."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from celery import signals

from .running import running_config

__all__ = ["touch_heartbeat"]

_HEARTBEAT_EVERY_S = 10.0


def touch_heartbeat(path: Path) -> None:
    """Update the liveness file's mtime (a probe checks it is recent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n")


def _schema_names(config: Any) -> dict[str, str]:
    """The loaded schemas, id → name (the metrics' ``schema`` and ``schema_id`` labels)."""
    try:
        from ..schema import load_schemas

        fallback = config.ingestion.fallback_schema_file_path
        loaded = load_schemas(config.schemas_dir, config.resolve(fallback) if fallback else None)
    except Exception:  # a broken schema folder is reported by the steps, not here
        return {}
    schemas = list(loaded.schemas) + ([loaded.fallback] if loaded.fallback is not None else [])
    return {schema.id: schema.name for schema in schemas}


@signals.worker_ready.connect
def _start_background(sender: Any = None, **_: Any) -> None:
    config = running_config()
    if config is None:
        return
    from .. import metrics

    # Metrics before the heartbeat: a worker that says "ready" (heartbeat file) is scrapable.
    metrics.init_series(_schema_names(config))
    if config.queue.metrics_port:
        concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
        from .metrics_server import start_metrics_server

        start_metrics_server(
            config.queue.metrics_port,
            config.queue,
            heartbeat=config.queue.heartbeat_file,
            concurrency=int(concurrency or config.queue.concurrency),
        )
    if config.queue.heartbeat_file:
        path = Path(config.queue.heartbeat_file)

        def beat() -> None:
            while True:
                touch_heartbeat(path)
                time.sleep(_HEARTBEAT_EVERY_S)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

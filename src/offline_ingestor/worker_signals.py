"""Worker process hooks: set-up, logging, per-task log context, liveness file, metrics, bounded stop.

``offline-ingestor worker`` and ``celery -A offline_ingestor.worker worker`` both end up in
:func:`prepare_worker` (the second through ``celeryd_init``, see ``worker.py``), so a worker
started either way has the same logs, secrets redaction, metrics, heartbeat and kombu fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from .config import Config
    from .submission import Producer
from celery import signals

from . import kombu_oom, kombu_patches  # noqa: F401  (applied on import: the worker needs them)
from .logs import configure_logging, get_logger, register_config_secrets, scrub_url

__all__ = ["flush_spool_once", "json_mode", "json_say", "prepare_worker", "request_fields", "touch_heartbeat"]

_HEARTBEAT_EVERY_S = 10.0
log = get_logger("offline_ingestor.worker")
_PREPARED: dict[str, Any] = {}


def prepare_worker(config: Any) -> None:
    """Everything a worker needs before Celery starts its pool (idempotent)."""
    if _PREPARED.get("config") is config:
        return
    _PREPARED["config"] = config
    os.environ["OFFLINE_INGESTOR_CONFIG"] = config.source_path or ""
    register_config_secrets(config)
    configure_logging(config.logging.format, config.logging.logging_level)
    from .metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir()
    if json_mode(config):
        _route_celery_prints()
    from .broker_layout import migrate_broker

    migrate_broker(config.queue.broker_url, config.queue.queue_name)  # once, before consuming


def _config() -> Any:
    # The running worker's app (worker.py's), without importing worker.py: it imports us.
    from celery import current_app

    return current_app.conf.get("offline_ingestor_config")


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
    config = _config()
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
    ref = args[0] if args and isinstance(args[0], dict) else {}
    structlog.contextvars.bind_contextvars(
        task_id=task_id,
        task=getattr(task, "name", None),
        key=ref.get("key"),
        file=ref.get("file"),
        step=_step_of(getattr(task, "name", None)),
    )


@signals.task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@signals.worker_shutting_down.connect
def _bound_warm_shutdown(how: str | None = None, **_: Any) -> None:
    # Sent from Celery's SIGTERM handler in the main process (worker_stop.py says why).
    config = _config()
    if how == "Warm" and config is not None:
        from .worker_stop import start_stop_timer

        start_stop_timer(config.queue.shutdown_grace_s)


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
        log.error("worker.lost", **fields, child=getattr(self, "worker_pid", None), error=repr(exc))
        with structlog.contextvars.bound_contextvars(**fields):
            return original(self, exc_info, *args, **kwargs)

    on_failure._offline_ingestor = True  # type: ignore[attr-defined]
    Request.on_failure = on_failure


@signals.task_failure.connect
def _record_refused_submit(
    sender: Any = None, exception: BaseException | None = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    """A file ``offline_ingestor.submit`` refused (outside the data roots, missing) goes to
    the failed registry and its record, not only to the log: ``failed``, ``status`` and a
    producer reading ``oi:job:<job id>`` then see it."""
    from .errors import IngestError, is_transient

    if getattr(sender, "name", None) != "offline_ingestor.submit" or not isinstance(exception, IngestError):
        return
    if is_transient(exception) or not args:
        return
    from .job_store import JobStore

    config = _config()
    job_id, reason = (kwargs or {}).get("job_id"), str(exception)
    try:
        key = JobStore.for_config(config).record_refusal(
            str(args[0]), job_id, reason, type(exception).__name__
        )
    except Exception as exc:  # Redis gone: the log line below is all there is
        log.error("submit.refusal_not_recorded", file=str(args[0]), error=str(exc))
        return
    from . import metrics

    metrics.count_file("refused", None)
    log.warning("submit.refused", key=key, file=str(args[0]), writer_job_id=job_id, reason=str(exception))


def touch_heartbeat(path: Path) -> None:
    """Update the liveness file's mtime (a probe checks it is recent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n")


def _schema_ids(config: Any) -> list[str]:
    try:
        from .schema import load_schemas

        fallback = config.ingestion.fallback_schema_file_path
        loaded = load_schemas(config.schemas_dir, config.resolve(fallback) if fallback else None)
    except Exception:  # a broken schema folder is reported by the steps, not here
        return []
    schemas = list(loaded.schemas) + ([loaded.fallback] if loaded.fallback is not None else [])
    return [schema.id for schema in schemas]


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    _patch_worker_lost()


@signals.worker_ready.connect
def _start_background(sender: Any = None, **_: Any) -> None:
    config = _config()
    if config is None:
        return
    from . import metrics

    # Metrics before the heartbeat: a worker that says "ready" (heartbeat file) is scrapable.
    metrics.init_series(_schema_ids(config))
    if config.queue.metrics_port:
        concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
        metrics.start_metrics_server(
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


def _spool_producer(config: Config) -> Producer | None:
    """A producer that sends this host's spool with the worker's Celery app (None: no spool)."""
    from celery import current_app

    from .chain import build_chain
    from .spool import Spool
    from .submission import Producer

    spool = Spool.for_config(config)
    if spool is None:
        return None

    def publish(job: Any) -> None:
        build_chain(current_app, job, config).apply_async()

    return Producer(config, spool=spool, publish=publish)


def flush_spool_once(config: Config, producer: Producer | None = None) -> int:
    """Enqueue what producers on this host spooled (Redis away, or the drop-in's fast path)."""
    producer = producer or _spool_producer(config)
    if producer is None or producer.spool is None or not producer.spool.has_pending():
        return 0
    return len(producer.flush().sent)


#: How often the flusher looks into the spool. The drop-in's fast path hands every request
#: over this way (fast_dropin.py), so this is its added latency (a quarter second on average).
SPOOL_POLL_S = 0.5
#: Set at shutdown: the flusher stops marking the folder before the mark is removed.
_flusher_stop = threading.Event()
_flusher: list[threading.Thread] = []


@signals.worker_ready.connect
def _start_spool_flusher(**_: Any) -> None:
    # Producers flush on their next call; the drop-in's fast path and a host whose producers
    # went quiet (the outage was at the end of a run) rely on this thread, and on
    # `offline-ingestor spool flush`.
    config = _config()
    if config is None or not config.queue.spool_dir or not config.queue.spool_flush_interval_s:
        return
    from .fast_dropin import broker_identity

    retry_every = config.queue.spool_flush_interval_s
    broker = broker_identity(config.queue)
    logger = structlog.get_logger("offline_ingestor.spool")
    producer = _spool_producer(config)
    if producer is None or producer.spool is None:
        return
    spool = producer.spool

    def loop() -> None:
        next_try = 0.0
        while not _flusher_stop.is_set():
            try:
                # "A worker sending to this Redis polls here": what lets the drop-in spool first.
                spool.mark_flusher(broker)
                due = time.monotonic() >= next_try and spool.has_pending()
                if due and producer.flush().stopped:  # Redis still away: the requests stay
                    next_try = time.monotonic() + retry_every
            except Exception as exc:  # a bad moment must not end the thread
                # A request Redis refused, say: try again after the configured interval (the
                # request stays in the spool), not every poll.
                next_try = time.monotonic() + retry_every
                logger.warning("spool.flush_failed", error=f"{type(exc).__name__}: {exc}")
            _flusher_stop.wait(SPOOL_POLL_S)

    thread = threading.Thread(target=loop, name="spool-flush", daemon=True)
    _flusher.append(thread)
    thread.start()


@signals.worker_shutdown.connect
def _stop_flusher_mark(**_: Any) -> None:
    # A stopped worker flushes nothing: new drop-in calls must enqueue directly at once,
    # not after FLUSHER_MAX_AGE_S (another worker on the host marks the folder again).
    config = _config()
    if config is None or not config.queue.spool_dir:
        return
    from .spool import FLUSHER_FILE

    # Stop the thread first, or its next poll (every 0.5 s) marks the folder again.
    _flusher_stop.set()
    for thread in _flusher:
        thread.join(timeout=5)
    with contextlib.suppress(OSError):
        (config.resolve(config.queue.spool_dir) / FLUSHER_FILE).unlink()

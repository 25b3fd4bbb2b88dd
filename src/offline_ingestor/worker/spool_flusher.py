"""The spool flusher: a thread that sends what producers on this host spooled.

Producers flush on their next call; the drop-in's fast path, and a host whose producers went
quiet after an outage, rely on this thread (and on ``offline-ingestor spool flush``).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog
from celery import signals

from .periodic import Periodic
from .running import running_config

if TYPE_CHECKING:
    from ..config import Config
    from ..queue.submission import Producer

__all__ = ["SPOOL_POLL_S", "flush_spool_once"]


def _spool_producer(config: Config) -> Producer | None:
    """A producer that sends this host's spool with the worker's Celery app (None: no spool)."""
    from celery import current_app

    from ..queue.spool import Spool
    from .chain import chain_producer

    spool = Spool.for_config(config)
    return None if spool is None else chain_producer(current_app, config, spool=spool)


def flush_spool_once(config: Config, producer: Producer | None = None) -> int:
    """Enqueue what producers on this host spooled (Redis away, or the drop-in's fast path)."""
    producer = producer or _spool_producer(config)
    if producer is None or producer.spool is None or not producer.spool.has_pending():
        return 0
    return len(producer.flush().sent)


#: How often the flusher looks into the spool. The drop-in's fast path hands every request
#: over this way (dropin/fast.py), so this is its added latency (a quarter second on average).
SPOOL_POLL_S = 0.5
#: Stopped at shutdown: the flusher stops marking the folder before the mark is removed.
_flusher: list[Periodic] = []


@signals.worker_ready.connect
def _start_spool_flusher(**_: Any) -> None:
    # Producers flush on their next call; the drop-in's fast path and a host whose producers
    # went quiet (the outage was at the end of a run) rely on this thread, and on
    # `offline-ingestor spool flush`.
    config = running_config()
    if config is None or not config.queue.spool_dir or not config.queue.spool_flush_interval_s:
        return
    from ..queue.broker_identity import broker_identity

    retry_every = config.queue.spool_flush_interval_s
    broker = broker_identity(config.queue)
    logger = structlog.get_logger("offline_ingestor.spool")
    producer = _spool_producer(config)
    if producer is None or producer.spool is None:
        return
    spool = producer.spool

    next_try = [0.0]

    def tick() -> None:
        # "A worker sending to this Redis polls here": what lets the drop-in spool first.
        spool.mark_flusher(broker)
        due = time.monotonic() >= next_try[0] and spool.has_pending()
        if due and producer.flush().stopped:  # Redis still away: the requests stay
            next_try[0] = time.monotonic() + retry_every

    def failed(exc: Exception) -> None:
        # A request Redis refused, say: try again after the configured interval (the request
        # stays in the spool), not every poll.
        next_try[0] = time.monotonic() + retry_every
        logger.warning("spool.flush_failed", error=f"{type(exc).__name__}: {exc}")

    _flusher.append(Periodic("spool-flush", SPOOL_POLL_S, tick, failed).start())


@signals.worker_shutdown.connect
def _stop_flusher_mark(**_: Any) -> None:
    # A stopped worker flushes nothing: new drop-in calls must enqueue directly at once,
    # not after FLUSHER_MAX_AGE_S (another worker on the host marks the folder again).
    config = running_config()
    if config is None or not config.queue.spool_dir:
        return
    from ..queue.spool import FLUSHER_FILE

    # Stop the thread first, or its next poll (every 0.5 s) marks the folder again.
    for flusher in _flusher:
        flusher.stop()
    with contextlib.suppress(OSError):
        (config.resolve(config.queue.spool_dir) / FLUSHER_FILE).unlink()

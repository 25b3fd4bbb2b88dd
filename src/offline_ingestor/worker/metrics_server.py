"""``/metrics`` of a worker: every child's counters, plus what the main process reads from Redis.

Read at scrape time: the queue depth and the age of its oldest message, the failed registry's
size, the heartbeat's age and the pool (processes, busy processes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ..config import QueueOptions
from ..metrics import PREFIX, never_fail, series

__all__ = ["start_metrics_server"]


def _message_body(message: dict[str, Any]) -> str | bytes:
    """A queued message's body: ours are plain JSON text, other producers' base64."""
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body)
    return str(body)


def _oldest_age(client: Any, names: list[str], now: float) -> float:
    """Seconds since the oldest waiting message's file was enqueued (0 when none waits).

    kombu pushes on the left and pops on the right: the oldest message is at index -1.
    """
    from ..queue.job_store import job_key

    oldest = 0.0
    for name in names:
        raw = client.lindex(name, -1)
        if not raw:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
            message = json.loads(raw)
            body = json.loads(_message_body(message))
            key = body[0][0]["key"]
            stamp = client.hget(job_key(key), "enqueued_at")
            if stamp:
                stamp = stamp.decode() if isinstance(stamp, bytes) else stamp
                started = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                oldest = max(oldest, now - started)
    return oldest


class _WorkerCollector:
    """Read per scrape: queue depth and age, failed registry, heartbeat age, pool."""

    def __init__(self, queue: QueueOptions, heartbeat: str, concurrency: int) -> None:
        self.queue, self.queue_name = queue, queue.queue_name
        self.heartbeat, self.concurrency = heartbeat, concurrency

    def collect(self) -> Iterator[Any]:
        import redis
        from celery.worker import state
        from prometheus_client.core import GaugeMetricFamily

        from ..queue.broker_layout import queue_keys
        from ..queue.connection import redis_client
        from ..queue.job_store import FAILED_KEY
        from ..queue.job_store import PREFIX as PREFIX_OI
        from ..queue.scicat_breaker import ScicatBreaker

        pool = GaugeMetricFamily(f"{PREFIX}pool_processes", "Pool processes configured")
        pool.add_metric([], self.concurrency)
        yield pool
        busy = GaugeMetricFamily(f"{PREFIX}pool_busy_processes", "Pool processes running a step")
        busy.add_metric([], len(state.active_requests))
        yield busy
        if self.heartbeat:
            with contextlib.suppress(OSError):
                age = time.time() - os.stat(self.heartbeat).st_mtime
                beat = GaugeMetricFamily(f"{PREFIX}heartbeat_age_seconds", "Age of the liveness file")
                beat.add_metric([], age)
                yield beat
        up_value = 1
        try:
            # One Redis or the master behind the sentinels, as the job store reaches it.
            client = redis_client(self.queue, socket_timeout=2, connect_timeout=2, decode=False)
            names = queue_keys(self.queue_name)
            depth_value = sum(int(client.llen(name)) for name in names)
            age_value = _oldest_age(client, names, time.time())
            failed_value = int(client.hlen(FAILED_KEY))
            outage = ScicatBreaker(client).outage()
            summary = {
                (k.decode() if isinstance(k, bytes) else str(k)): float(v)
                for k, v in client.hgetall(f"{PREFIX_OI}liveness").items()
            }
        except redis.RedisError:
            up_value = 0
        up = GaugeMetricFamily(f"{PREFIX}redis_up", "1 when the worker's scrape reached Redis")
        up.add_metric([], up_value)
        yield up
        if not up_value:
            return
        depth = GaugeMetricFamily(f"{PREFIX}queue_depth", "Messages waiting in the queue", labels=["queue"])
        depth.add_metric([self.queue_name], depth_value)
        yield depth
        oldest = GaugeMetricFamily(
            f"{PREFIX}queue_oldest_age_seconds", "Age of the oldest waiting file", labels=["queue"]
        )
        oldest.add_metric([self.queue_name], age_value)
        yield oldest
        failed = GaugeMetricFamily(f"{PREFIX}failed_files", "Files in the failed registry")
        failed.add_metric([], failed_value)
        yield failed
        if summary:
            # The elected reconciler's last pass (worker/reconciler.py); absent before its first.
            unfinished = GaugeMetricFamily(
                f"{PREFIX}oldest_unfinished_seconds", "Age of the oldest file queued or running"
            )
            unfinished.add_metric([], max(0.0, summary["at"] - summary["oldest_unfinished"]))
            yield unfinished
            stuck = GaugeMetricFamily(
                f"{PREFIX}stuck_files", "Files queued or running longer than queue.stuck_after_s"
            )
            stuck.add_metric([], summary["stuck"])
            yield stuck
        yield from _scicat_gauges(outage, time.time())


def _scicat_gauges(outage: Any, now: float) -> Iterator[Any]:
    """SciCat up or down as the workers' breaker says (``queue/scicat_breaker.py``), for the alert."""
    from prometheus_client.core import GaugeMetricFamily

    up = GaugeMetricFamily(f"{PREFIX}scicat_up", "0 while the workers' SciCat breaker is open (SciCat down)")
    up.add_metric([], 0 if outage else 1)
    yield up
    seconds = GaugeMetricFamily(
        f"{PREFIX}scicat_outage_seconds", "How long SciCat has been down (0 while up)"
    )
    seconds.add_metric([], max(0.0, now - outage.since) if outage else 0.0)
    yield seconds
    waiting = GaugeMetricFamily(f"{PREFIX}scicat_waiting_files", "Files waiting for SciCat to come back")
    waiting.add_metric([], outage.waiting if outage else 0)
    yield waiting


@never_fail
def start_metrics_server(
    port: int, queue: QueueOptions, *, heartbeat: str = "", concurrency: int = 0
) -> None:
    """Serve /metrics from the main worker process (aggregating every child)."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    series()  # fails (and disables metrics, once) when there is no multiprocess folder
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    ProcessCollector(namespace="offline_ingestor_worker", registry=registry)
    registry.register(_WorkerCollector(queue, heartbeat, concurrency))
    start_http_server(port, addr="0.0.0.0", registry=registry)

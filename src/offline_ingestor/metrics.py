"""Prometheus metrics of the worker (prefork: ``prometheus_client`` multiprocess mode).

Children count; the main process serves ``/metrics`` on ``queue.metrics_port`` and also
reports the queue depth and failed-registry size read from Redis at scrape time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["count_file", "count_retry", "observe_step", "prepare_multiprocess_dir", "start_metrics_server"]


def prepare_multiprocess_dir() -> str:
    """Point prometheus_client at a shared folder; must run before it is imported."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="oi-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _metrics() -> dict[str, Any]:
    from prometheus_client import Counter, Histogram

    global _CACHE
    if _CACHE is None:
        _CACHE = {
            "files": Counter(
                "ingest_files_total", "Files finished, by outcome and schema", ["outcome", "schema"]
            ),
            "retries": Counter("ingest_retries_total", "Step retries after transient errors", ["step"]),
            "steps": Histogram(
                "ingest_step_seconds",
                "Step duration",
                ["step"],
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600),
            ),
        }
    return _CACHE


_CACHE: dict[str, Any] | None = None


def observe_step(step: str, seconds: float) -> None:
    _metrics()["steps"].labels(step=step).observe(seconds)


def count_file(outcome: str, schema: str) -> None:
    _metrics()["files"].labels(outcome=outcome, schema=schema or "unknown").inc()


def count_retry(step: str) -> None:
    _metrics()["retries"].labels(step=step).inc()


class _QueueCollector:
    """Queue depth (all priority sub-queues) and failed files, read from Redis per scrape."""

    def __init__(self, broker_url: str, queue_name: str) -> None:
        self.broker_url = broker_url
        self.queue_name = queue_name

    def collect(self) -> Iterator[Any]:
        import redis
        from prometheus_client.core import GaugeMetricFamily

        from .broker_layout import queue_keys
        from .job_store import FAILED_KEY

        depth = GaugeMetricFamily("ingest_queue_depth", "Messages waiting in the queue", labels=["queue"])
        failed = GaugeMetricFamily("ingest_failed_files", "Files in the failed registry")
        try:
            client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
            names = queue_keys(self.queue_name)
            depth.add_metric([self.queue_name], sum(int(client.llen(name)) for name in names))
            failed.add_metric([], int(client.hlen(FAILED_KEY)))
        except redis.RedisError:
            return
        yield depth
        yield failed


def start_metrics_server(port: int, broker_url: str, queue_name: str) -> None:
    """Serve /metrics from the main worker process (aggregating every child)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_QueueCollector(broker_url, queue_name))
    start_http_server(port, addr="0.0.0.0", registry=registry)

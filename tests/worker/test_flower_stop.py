"""Flower after a bounded stop: a step abandoned at shutdown is not shown as still running.

Stock Flower (only the broker URL) watches a worker that gets SIGTERM during a long hash
and abandons it after ``queue.shutdown_grace_s``. Flower's workers table keeps the count of
active tasks of a worker's last event: it must say 0 for the stopped worker (the step is
back in the queue), not 1.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import wait_for

pytest.importorskip("flower", reason="flower is in the [test] extra")
from test_bounded_stop import big_file, enqueue, long_step_config, wait_hashing
from test_flower import get, stock_flower  # after the skip: test_flower skips without flower too

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_flower_does_not_show_an_abandoned_step_as_active(
    standin: Any, redis_server: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    config = long_step_config(queue_config, shutdown_grace_s=1)
    path = big_file(data_root, "big.hdf")
    with stock_flower(redis_server.url, tmp_path / "flower.log") as flower:
        worker = start_worker(config, concurrency=1)
        wait_hashing(redis.Redis.from_url(redis_server.url), enqueue(config, path))

        def started_in_flower() -> list[dict[str, Any]]:
            tasks = get(f"{flower}/api/tasks").values()
            return [
                t for t in tasks if t["name"] == "offline_ingestor.build_dataset" and t["state"] == "STARTED"
            ]

        wait_for(lambda: bool(started_in_flower()), 30, "Flower to see the hash start", every=0.5)
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGTERM)
        assert worker.process.wait(60) == 0
        assert "worker.stop_grace_exceeded" in worker.log.read_text()

        def offline() -> list[dict[str, Any]]:
            workers = get(f"{flower}/workers?json=1")["data"]
            return [info for info in workers if info.get("status") is False]

        wait_for(lambda: bool(offline()), 30, "Flower to see the worker go offline", every=1)
        (gone,) = offline()
        assert gone["active"] == 0, f"Flower shows {gone['active']} step(s) active on the stopped worker"

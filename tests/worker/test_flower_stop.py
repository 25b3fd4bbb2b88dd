"""Flower after a bounded stop: a step abandoned at shutdown is not shown as still running.

Stock Flower (only the broker URL) watches a worker that gets SIGTERM during a long hash
and abandons it after ``queue.shutdown_grace_s``. Flower's workers table keeps the count of
active tasks of a worker's last event: it must say 0 for the stopped worker (the step is
back in the queue), not 1.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import ingestor_cli, wait_for, ymir_file

pytest.importorskip("flower", reason="flower is in the [test] extra")
from test_flower import get, stock_flower  # after the skip: test_flower skips without flower too

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_flower_does_not_show_an_abandoned_step_as_active(
    standin: Any, redis_server: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    config = queue_config(
        queue={
            "concurrency": 1,
            "visibility_timeout_s": 3600,
            "task_time_limit_s": 3000,
            "lease_ttl_s": 3300,
            "shutdown_grace_s": 1,
        }
    )
    path = ymir_file(data_root, name="big.hdf")
    with path.open("r+b") as handle:
        handle.truncate(3 << 30)
    with stock_flower(redis_server.url, tmp_path / "flower.log") as flower:
        worker = start_worker(config, concurrency=1)
        (result,) = json.loads(ingestor_cli("enqueue", "-c", str(config), "--json", str(path)).stdout)
        client = redis.Redis.from_url(redis_server.url)

        def hashing() -> bool:
            return client.hget(f"oi:job:{result['key']}", "step") == b"build-dataset"

        wait_for(hashing, 60, "the hash to start")

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

"""Stock Flower, started with nothing but the broker URL, sees our workers, queue and tasks.

Flower is the real ``flower`` package (a test dependency) run as the compose file runs it:
``celery --broker=URL flower``, no app and no transport options of ours. It must read the
same Redis layout as the worker (queue/broker_layout.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import BIN, ingestor_cli, wait_for, ymir_file
from offline_ingestor.ingest.steps import STEPS
from offline_ingestor.testing.processes import free_port

pytest.importorskip("flower", reason="flower is in the [test] extra")
pytestmark = [pytest.mark.redis, pytest.mark.worker]


AUTH = "flower:test-pw"


def get(url: str) -> Any:
    token = base64.b64encode(AUTH.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def stock_flower(broker_url: str, log: Path) -> Iterator[str]:
    """``celery --broker=URL flower`` on a loopback port; yields its base URL."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(BIN / "celery"),
                f"--broker={broker_url}",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
                f"--basic-auth={AUTH}",  # Flower 2 serves its API only with authentication
                "--inspect_timeout=5000",  # a loaded 2-core CI machine answers slowly
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/healthcheck", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(up, 60, "Flower to answer")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        print("--- flower log (last 30 lines)")
        print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))


def test_stock_flower_lists_worker_queue_lengths_and_all_five_steps(
    standin: Any, redis_server: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """Flower's API shows the worker, the tasks of every step, and waiting messages per queue."""
    config = queue_config()
    with stock_flower(redis_server.url, tmp_path / "flower.log") as flower:
        worker = start_worker(config)
        done = ymir_file(data_root, name="done.hdf")
        assert ingestor_cli("enqueue", "-c", str(config), str(done)).returncode == 0
        wait_for(lambda: len(standin.origdatablocks) == 1, what="the origdatablock")

        def worker_listed() -> bool:
            workers = get(f"{flower}/api/workers?refresh=1")
            return any(info.get("active_queues") for info in workers.values())

        wait_for(worker_listed, 60, "Flower to list the worker with its queues", every=1)
        workers = get(f"{flower}/api/workers")
        (name,) = workers
        assert [queue["name"] for queue in workers[name]["active_queues"]] == ["ingest"]

        expected = {f"offline_ingestor.{step.replace('-', '_')}" for step in STEPS}

        def five_steps_seen() -> bool:
            tasks = get(f"{flower}/api/tasks").values()
            return expected <= {task["name"] for task in tasks if task["state"] == "SUCCESS"}

        wait_for(five_steps_seen, 30, "Flower to show a successful task of every step", every=0.5)

        # Stop the worker, queue three files: Flower counts them on our queue.
        worker.stop()
        for index in range(3):
            path = ymir_file(data_root, name=f"waiting-{index}.hdf")
            assert ingestor_cli("enqueue", "-c", str(config), str(path)).returncode == 0
        lengths = get(f"{flower}/api/queues/length")["active_queues"]
        assert {"name": "ingest", "messages": 3} in lengths, lengths

"""Issue 22, problem 5: a worker that meets a full Redis (``maxmemory`` + ``noeviction``) never
exits with "Unrecoverable error"; it stops taking work while Redis is full and goes on after.

Redis is filled for real (a filler writes until Redis answers OOM, then the room left is what a
delete frees), while the worker consumes, publishes next steps, beats and reconciles, and an
operator (or Flower) sends control commands: ``celery inspect ping`` and a ``revoke``, whose
replies the worker must write into the full Redis.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import BIN, LIVE, ingestor_cli, wait_for, ymir_file
from offline_ingestor.testing import Fault
from offline_ingestor.testing.processes import WorkerProcess
from offline_ingestor.testing.pytest_plugin import ingestor_env

pytestmark = [pytest.mark.redis, pytest.mark.worker]


class ProductionWorker(WorkerProcess):
    """``offline-ingestor worker`` with the flags an operator uses (mingle and gossip on)."""

    def worker_args(self) -> list[str]:
        return ["worker", "--config", str(self.config), "--concurrency", str(self.concurrency)]


def fill(client: redis.Redis) -> int:
    """Write until Redis refuses (OOM): the number of filler keys written."""
    chunk = b"x" * 65536
    written = 0
    while True:
        try:
            client.set(f"filler:{written}", chunk)
        except redis.exceptions.OutOfMemoryError:
            return written
        written += 1


def celery(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OFFLINE_INGESTOR_CONFIG": str(config)}
    return subprocess.run(
        [str(BIN / "celery"), "-A", "offline_ingestor.worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@contextlib.contextmanager
def production_worker(config: Path, standin: Any, tmp_path: Path) -> Iterator[ProductionWorker]:
    """A production worker against a stand-in slowed to 50 ms a request; stopped (and its log's
    tail printed) at the end."""
    standin.inject(Fault(status=None, delay_s=0.05, times=None))
    worker = ProductionWorker(config, tmp_path / "worker.log", tmp_path / "heartbeat", 2, env=ingestor_env())
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        print("\n".join(worker.log.read_text(errors="replace").splitlines()[-80:]))


def enqueue_then_fill(config: Path, standin: Any, admin: redis.Redis, data_root: Path, prefix: str) -> int:
    """Enqueue 30 files, let a few finish, then fill Redis to a maxmemory just above what it
    holds; the fillers written."""
    paths = [ymir_file(data_root, name=f"{prefix}-{index}.hdf") for index in range(30)]
    ingestor_cli("enqueue", "-c", str(config), *map(str, paths))
    wait_for(lambda: len(standin.origdatablocks) >= 3, 60, "a few files done")
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 4 * 1024 * 1024)
    return fill(admin)


def wait_all_done_alive(worker: Any, redis_url: str, files: int) -> None:
    """Wait until ``files`` records are done, failing at once if the worker exits meanwhile."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def done() -> bool:
        assert worker.process is not None and worker.process.poll() is None, "the worker exited"
        states = [client.hget(name, "state") for name in client.scan_iter("oi:job:*")]
        return len(states) == files and set(states) == {"done"}

    wait_for(done, 180, "every file to be done")


def test_a_full_redis_never_ends_the_worker(
    standin: Any, queue_config: Any, redis_server: Any, data_root: Path, tmp_path: Path
) -> None:
    """Redis full for several heartbeat TTLs mid-run, control commands meanwhile: the worker
    lives throughout, logs no "Unrecoverable error", and every file ends done once."""
    config = queue_config(queue=LIVE)
    admin = redis.Redis.from_url(redis_server.url)
    with production_worker(config, standin, tmp_path) as worker:
        fillers = enqueue_then_fill(config, standin, admin, data_root, "oom")
        full_since = time.monotonic()
        # Operators and Flower keep asking the workers while Redis is full.
        for _ in range(2):
            celery(config, "inspect", "ping", "-t", "1")
            celery(config, "control", "revoke", "no-such-task-id")
            time.sleep(1)
        while time.monotonic() - full_since < 6:  # several heartbeat TTLs
            time.sleep(0.5)
            fill(admin)  # whatever the worker freed (acks) is taken again
        assert worker.process is not None and worker.process.poll() is None, "the worker exited"
        admin.delete(*(f"filler:{index}" for index in range(fillers + 200)))
        admin.config_set("maxmemory", 0)
        wait_all_done_alive(worker, redis_server.url, 30)
    log = worker.log.read_text(errors="replace")
    assert "Unrecoverable error" not in log
    assert len(standin.datasets) == 30 and len(standin.origdatablocks) == 30


@pytest.mark.parametrize("drop", ["network-blip", "redis-restart"])
def test_a_connection_lost_while_redis_is_full_never_ends_the_worker(
    drop: str, standin: Any, queue_config: Any, redis_server: Any, data_root: Path, tmp_path: Path
) -> None:
    """The worker loses its broker connection while Redis is full, so reconnecting re-declares its
    queues into a Redis that refuses writes: it waits (one ``redis.full_waiting`` line), lives
    throughout, and every file queued before ends done once Redis has room."""
    config = queue_config(queue=LIVE)
    admin = redis.Redis.from_url(redis_server.url)
    with production_worker(config, standin, tmp_path) as worker:
        enqueue_then_fill(config, standin, admin, data_root, "lost")
        if drop == "network-blip":
            # Every connection but ours dropped at once, as by a switch or a firewall's idle reaper.
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        else:
            # Restarted (container, host) with the same data and maxmemory in its configuration,
            # a little under what the data takes, so it comes back full.
            full = int(admin.info("memory")["used_memory"])
            redis_server.extra_args = ["--maxmemory", str(full - 2 * 1024 * 1024)]
            redis_server.restart()
            admin = redis.Redis.from_url(redis_server.url)
            assert admin.info("memory")["used_memory"] > int(admin.config_get("maxmemory")["maxmemory"])
        full_since = time.monotonic()
        while time.monotonic() - full_since < 8:  # reconnects, and several heartbeat TTLs
            assert worker.process is not None and worker.process.poll() is None, "the worker exited"
            time.sleep(0.5)
            fill(admin)  # whatever the worker freed (acks) is taken again
        admin.delete(*admin.keys("filler:*"))
        admin.config_set("maxmemory", 0)
        wait_all_done_alive(worker, redis_server.url, 30)
    log = worker.log.read_text(errors="replace")
    assert "Unrecoverable error" not in log
    # One line when the wait begins and one when the worker consumes again, not one a retry.
    assert log.count('"event": "redis.full_waiting"') == 1
    assert log.count('"event": "redis.full_over"') == 1
    assert len(standin.datasets) == 30 and len(standin.origdatablocks) == 30

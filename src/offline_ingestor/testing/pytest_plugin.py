"""pytest fixtures for testing against real services (``pytest_plugins = [this module]``).

* ``redis_server``: a real ``redis-server`` of the test's own on a free loopback port (AOF on);
* ``standin``: the seeded SciCat stand-in (:mod:`.scenario`), a real HTTP server;
* ``data_root`` / ``make_config``: a data folder and configs for the stand-in;
* ``queue_config`` / ``start_worker``: a worker config for both, and real Celery workers
  (prefork) that are stopped, with their logs shown, when the test ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import Config
from .processes import RedisServer, WorkerProcess
from .scenario import INGESTOR_ENV, seeded_standin, write_config
from .scenario import make_config as build_config
from .scicat_standin import ScicatStandin

__all__ = ["ingestor_env", "running_workers"]

#: The queue settings of test workers: short timings so that redeliveries happen in seconds.
TEST_QUEUE = {
    "enabled": True,
    "concurrency": 2,
    "max_retries": 6,
    "retry_backoff_s": 0.2,
    "retry_backoff_max_s": 2,
    "visibility_timeout_s": 20,
    "task_time_limit_s": 15,
    "max_redeliveries": 2,
}


def ingestor_env() -> dict[str, str]:
    """This process's environment plus the stand-in ingestor's password (as operators set it)."""
    return {**os.environ, **INGESTOR_ENV}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real Redis per test (with AOF, so a restart keeps its data)."""
    server = RedisServer(tmp_path / "redis-data")
    try:
        server.start()
    except FileNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("redis-server not installed (scripts/setup installs it)")
    yield server
    server.stop(kill=True)


@pytest.fixture
def standin() -> Iterator[ScicatStandin]:
    """The SciCat stand-in, seeded with the proposals and instruments of the examples."""
    with seeded_standin() as server:
        yield server


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def make_config(data_root: Path) -> Callable[..., Config]:
    """Build a config for a stand-in (shipped schemas); keyword sections override."""

    def build(standin: ScicatStandin, **sections: dict[str, Any]) -> Config:
        return build_config(standin.url_v3, data_root, **sections)

    return build


@pytest.fixture
def queue_config(
    tmp_path: Path, redis_server: RedisServer, standin: ScicatStandin, data_root: Path
) -> Callable[..., Path]:
    """Write a worker config for this test's Redis and stand-in; sections override."""

    def write(**sections: dict[str, Any]) -> Path:
        queue = {
            **TEST_QUEUE,
            "broker_url": redis_server.url,
            "heartbeat_file": str(tmp_path / "heartbeat"),
            **sections.pop("queue", {}),
        }
        # Retries belong to the step executor; none inside the client.
        scicat = {"max_retries": 0, **sections.pop("scicat", {})}
        return write_config(
            tmp_path / "worker.yml", standin.url_v3, data_root, queue=queue, scicat=scicat, **sections
        )

    return write


@contextlib.contextmanager
def running_workers(
    tmp_path: Path, queue_config: Callable[..., Path], *, kill_at_end: bool = False
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers on demand; at the end stop (or SIGKILL) them all and print their logs."""
    started: list[WorkerProcess] = []

    def start(config: Path | None = None, concurrency: int = 2) -> WorkerProcess:
        path = config or (tmp_path / "worker.yml" if (tmp_path / "worker.yml").exists() else queue_config())
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(path, log, tmp_path / "heartbeat", concurrency, env=ingestor_env())
        started.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in started:
            worker.kill() if kill_at_end else worker.stop()
        for worker in started:
            print(f"--- {worker.log.name} (last 40 lines)")
            print("\n".join(worker.log.read_text(errors="replace").splitlines()[-40:]))


@pytest.fixture
def start_worker(tmp_path: Path, queue_config: Callable[..., Path]) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for the test; all are stopped (and their logs shown) after it."""
    with running_workers(tmp_path, queue_config) as start:
        yield start

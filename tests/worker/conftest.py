"""Real Celery worker processes (prefork) against a real redis-server of the test's own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT
from offline_ingestor.testing.processes import WorkerProcess, wait_for

__all__ = ["BIN", "Worker", "cli", "running_workers", "wait_for"]

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.redis, pytest.mark.worker]


class Worker(WorkerProcess):
    """The worker as the tests run it: the stand-in's ingestor password in its environment."""

    def __init__(self, config: Path, log: Path, heartbeat: Path, concurrency: int = 2) -> None:
        super().__init__(
            config,
            log,
            heartbeat,
            concurrency,
            env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"},
        )


@pytest.fixture
def queue_config(tmp_path: Path, redis_server: Any, standin: Any, data_root: Path) -> Callable[..., Path]:
    """Write a worker config for this test's Redis and stand-in; sections override."""

    def write(**sections: Any) -> Path:
        data: dict[str, Any] = {
            "ingestion": {
                "schemas_directory": str(ROOT / "schemas"),
                "fallback_schema_file_path": str(ROOT / "schemas/fallback/ess-fallback.imsc.yml"),
                "allowed_data_roots": [str(data_root)],
                "file_handling": {"ingestor_files_directory": str(data_root / "ingestor")},
            },
            "scicat": {"host": standin.url_v3, "username": "ingestor", "timeout": 10, "max_retries": 0},
            "queue": {
                "enabled": True,
                "broker_url": redis_server.url,
                "concurrency": 2,
                "heartbeat_file": str(tmp_path / "heartbeat"),
                "max_retries": 6,
                "retry_backoff_s": 0.2,
                "retry_backoff_max_s": 2,
                "visibility_timeout_s": 20,
                "task_time_limit_s": 15,
                "max_redeliveries": 2,
            },
            "logging": {"format": "json"},
        }
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        path = tmp_path / "worker.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@contextlib.contextmanager
def running_workers(
    tmp_path: Path, queue_config: Callable[..., Path], *, kill_at_end: bool = False
) -> Iterator[Callable[..., Worker]]:
    """Start workers on demand; at the end stop (or SIGKILL) them all and print their logs."""
    started: list[Worker] = []

    def start(config: Path | None = None, concurrency: int = 2) -> Worker:
        path = config or (tmp_path / "worker.yml" if (tmp_path / "worker.yml").exists() else queue_config())
        worker = Worker(path, tmp_path / f"worker-{len(started)}.log", tmp_path / "heartbeat", concurrency)
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
def start_worker(tmp_path: Path, queue_config: Callable[..., Path]) -> Iterator[Callable[..., Worker]]:
    """Start workers for the test; all are stopped (and their logs shown on failure) after."""
    with running_workers(tmp_path, queue_config) as start:
        yield start


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "offline-ingestor"), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"},
    )

"""Real Celery worker processes (prefork) against a real redis-server of the test's own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT
from offline_ingestor.testing.processes import wait_for

__all__ = ["BIN", "Worker", "cli", "running_workers", "wait_for"]

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.redis, pytest.mark.worker]


class Worker:
    """``offline-ingestor worker`` as a subprocess; its log is kept for the test report."""

    def __init__(self, config: Path, log: Path, heartbeat: Path, concurrency: int = 2) -> None:
        self.config, self.log, self.heartbeat, self.concurrency = config, log, heartbeat, concurrency
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.heartbeat.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "offline-ingestor"),
                    "worker",
                    "-c",
                    str(self.config),
                    "--concurrency",
                    str(self.concurrency),
                    "--without-mingle",
                    "--without-gossip",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"},
            )
        wait_for(self.heartbeat.exists, 60, "the worker to be ready")
        return self

    def children(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and children), like a lost node."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()


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

"""Reliability suite: real redis-server, real prefork workers, the SciCat stand-in with faults.

The worker fixtures come from ``tests/worker/conftest.py`` (imported, so that pytest sees
them here too). Every test that ingests files reports its figures (files, lost,
duplicated) with :func:`figures`, which ``scripts/reliability`` turns into the table in
RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import ROOT, ymir_file
from worker.conftest import BIN, Worker, cli, running_workers, wait_for
from worker.conftest import queue_config as queue_config

pytestmark = [pytest.mark.redis, pytest.mark.worker]

__all__ = [
    "BIN",
    "ROOT",
    "Tally",
    "Worker",
    "cli",
    "enqueue_all",
    "failures",
    "make_files",
    "redis_of",
    "rss_kib",
    "tally",
    "wait_for",
]


@dataclass(frozen=True)
class Tally:
    """What SciCat holds for a set of files: how many are missing or doubled."""

    files: int
    lost: int
    duplicated: int
    datasets: int
    blocks: int


def make_files(data_root: Path, count: int, prefix: str = "run", **kwargs: Any) -> dict[Path, str]:
    """``count`` small YMIR files; path -> the file writer job id (also the dataset pid's tail)."""
    made: dict[Path, str] = {}
    for index in range(count):
        job_id = str(uuid.uuid4())
        made[ymir_file(data_root, name=f"{prefix}-{index:05d}.hdf", job_id=job_id, **kwargs)] = job_id
    return made


def tally(standin: Any, files: dict[Path, str]) -> Tally:
    """Count, per file, the datasets (by job id) and the origdatablocks holding them."""
    datasets = standin.datasets
    blocks = standin.origdatablocks
    by_job: dict[str, list[str]] = {}
    for pid, doc in datasets.items():
        meta = (doc.get("scientificMetadata") or {}).get("job_id") or {}
        by_job.setdefault(str(meta.get("value") if isinstance(meta, dict) else meta), []).append(pid)
    blocks_of: dict[str, int] = {}
    for block in blocks:
        blocks_of[block["datasetId"]] = blocks_of.get(block["datasetId"], 0) + 1
    lost = duplicated = 0
    for job_id in files.values():
        pids = by_job.get(job_id, [])
        count = sum(blocks_of.get(pid, 0) for pid in pids)
        if not pids or count == 0:
            lost += 1
        elif len(pids) > 1 or count > 1:
            duplicated += 1
    return Tally(len(files), lost, duplicated, len(datasets), len(blocks))


def redis_of(config: Path) -> redis.Redis:
    """A client for the Redis a worker config points at."""
    import yaml

    url = yaml.safe_load(config.read_text())["queue"]["broker_url"]
    return redis.Redis.from_url(url, decode_responses=True)


def failures(config: Path) -> dict[str, dict[str, Any]]:
    """The failed registry, by file path."""
    raw = redis_of(config).hgetall("oi:failed")
    return {entry["file"]: entry for entry in map(json.loads, raw.values())}


def enqueue_all(config: Path, paths: Iterable[Path | str]) -> subprocess.CompletedProcess[str]:
    """Enqueue many paths with one CLI run (paths on stdin), as an operator would."""
    result = subprocess.run(
        [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config)],
        input="\n".join(map(str, paths)),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def key_of(config: Path, path: Path) -> str:
    """The job key the queue uses for ``path``."""
    client = redis_of(config)
    for name in client.scan_iter("oi:job:*", count=1000):
        if client.hget(name, "file") == os.path.realpath(path):
            return str(name).removeprefix("oi:job:")
    raise AssertionError(f"no job record for {path}")


def rss_kib(pid: int) -> int:
    """VmRSS of a process and all its children (KiB)."""
    total = 0
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for each in [pid, *map(int, out)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


@pytest.fixture
def figures(record_property: Any) -> Any:
    """Record a case's figures for the reliability table (junit properties)."""

    def record(result: Tally | None = None, **extra: Any) -> None:
        if result is not None:
            record_property("files", result.files)
            record_property("lost", result.lost)
            record_property("duplicated", result.duplicated)
        for name, value in extra.items():
            record_property(name, value)

    return record


@pytest.fixture
def fast_config(queue_config: Any) -> Any:
    """A worker config with the shortest timings the settings allow (VT 15 s, tiny backoff)."""

    def write(**sections: Any) -> Path:
        queue = {
            "visibility_timeout_s": 15,
            "task_time_limit_s": 12,
            "retry_backoff_s": 0.1,
            "retry_backoff_max_s": 1,
            **sections.pop("queue", {}),
        }
        return queue_config(queue=queue, **sections)  # type: ignore[no-any-return]

    return write


@pytest.fixture
def start_worker(tmp_path: Path, queue_config: Any) -> Iterator[Callable[..., Worker]]:
    """Like tests/worker's fixture, but workers are SIGKILLed at teardown (saves ~3 s a test)."""
    with running_workers(tmp_path, queue_config, kill_at_end=True) as start:
        yield start

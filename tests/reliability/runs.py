"""What the reliability cases share: make many files, enqueue them, count what SciCat holds.

Every case ends with :func:`tally` (files lost or doubled), which ``scripts/reliability.py``
turns into the table in RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

from helpers import BIN, ymir_file
from offline_ingestor.queue.job_store import FAILED_KEY, JobStore

__all__ = [
    "Tally",
    "enqueue_all",
    "failures",
    "key_of",
    "make_files",
    "redis_of",
    "rss_kib",
    "settled",
    "states",
    "store_of",
    "tally",
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
    url = yaml.safe_load(config.read_text())["queue"]["broker_url"]
    return redis.Redis.from_url(url, decode_responses=True)


def store_of(config: Path) -> JobStore:
    """The job store of the Redis a worker config points at."""
    return JobStore(redis_of(config))


def states(config: Path) -> dict[str, str]:
    """File path -> state of its newest record."""
    return {record.fields.get("file", ""): record.state for record in store_of(config).records()}


def failures(config: Path) -> dict[str, dict[str, Any]]:
    """The failed registry, by file path."""
    raw = redis_of(config).hgetall(FAILED_KEY)
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
    key = store_of(config).find_key(os.path.realpath(path))
    assert key is not None, f"no job record for {path}"
    return key


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


def unsettled(config: Path) -> str:
    """What keeps :func:`settled` false: records not done/failed, queued and unacked messages."""
    open_records = [
        f"{Path(record.fields.get('file', '?')).name}: {record.state} at {record.fields.get('step', '?')}"
        for record in store_of(config).records()
        if record.state not in ("done", "failed")
    ]
    client = redis_of(config)
    queues = {
        str(name): client.llen(name) for name in client.scan_iter("ingest*") if client.type(name) == "list"
    }
    return f"open records {open_records}, queues {queues}, unacked {client.hlen('unacked')}"


def settled(config: Path, files: int) -> bool:
    """Every job done or failed, nothing waiting in the queue and nothing unacked."""
    found = [record.state for record in store_of(config).records()]
    if len(found) < files or any(state not in ("done", "failed") for state in found):
        return False
    client = redis_of(config)
    queued = sum(client.llen(name) for name in client.scan_iter("ingest*") if client.type(name) == "list")
    return queued == 0 and client.hlen("unacked") == 0

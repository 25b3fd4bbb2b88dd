"""What the reliability cases share: make many files, enqueue them, wait for them to settle
after the fault (the one skeleton of every outage case), count what SciCat holds.

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

from helpers import BIN, wait_for, ymir_file
from offline_ingestor.config import load_config
from offline_ingestor.queue.connection import redis_client
from offline_ingestor.queue.job_store import FAILED_KEY, JobStore
from offline_ingestor.queue.spool import Spool

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
    "unsettled",
    "wait_settled",
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
    """A new client for the Redis a worker config points at (through its sentinels: it follows
    a failover)."""
    return redis_client(load_config(config).queue, socket_timeout=2, connect_timeout=1)


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
    """What keeps :func:`settled` false: open records with claim, lease and document, queues,
    unacked messages and the spool (for a failure message)."""
    try:
        client = redis_of(config)
        open_records = [
            f"{record.key} ({Path(record.fields.get('file', '?')).name}): {record.fields} "
            f"lease={client.get(f'oi:lease:{record.key}')} doc={bool(client.exists(f'oi:doc:{record.key}'))}"
            for record in JobStore(client).records()
            if record.state not in ("done", "failed")
        ]
        queues = {
            str(name): client.llen(name)
            for name in client.scan_iter("ingest*")
            if client.type(name) == "list"
        }
        spool = Spool.for_config(load_config(config))
        records = "".join(f"\n  {line}" for line in open_records[:10])
        return (
            f"{len(open_records)} open, queues {queues}, unacked {client.hlen('unacked')}, "
            f"spool {spool and spool.count()}{records}"
        )
    except redis.RedisError as exc:
        return f"Redis: {exc}"


def settled(config: Path, files: int) -> bool:
    """Every job done or failed, nothing queued, unacked or spooled (False while Redis is away)."""
    try:
        client = redis_of(config)
        found = [record.state for record in JobStore(client).records()]
        if len(found) < files or any(state not in ("done", "failed") for state in found):
            return False
        queued = sum(client.llen(name) for name in client.scan_iter("ingest*") if client.type(name) == "list")
        spool = Spool.for_config(load_config(config))
        return queued == 0 and client.hlen("unacked") == 0 and (spool is None or spool.count() == 0)
    except redis.RedisError:
        return False


def wait_settled(
    config: Path,
    files: int,
    *,
    timeout: float,
    workers: Iterable[Any] = (),
    what: str = "every file to be done or failed",
    every: float = 0.5,
) -> None:
    """The end of every outage case: wait until :func:`settled`, while each of ``workers``
    stays alive (an exit is the failure); a time-out says what is still open, and so does
    pytest-timeout's (in the captured output it prints with the failure)."""

    def settled_while_alive() -> bool:
        for worker in workers:
            code = worker.process.poll() if worker.process else None
            assert code is None, f"{worker.log.name} exited (status {code}); see its log"
        return settled(config, files)

    try:
        wait_for(settled_while_alive, timeout=timeout, what=what, every=every)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {unsettled(config)}") from None
    except BaseException:
        print(f"Redis state at the failure: {unsettled(config)}")
        raise

"""The worker's memo of pids SciCat rewrote: Redis, where every worker and rerun looks.

``oi:pid:<sha256 of file and sent pid>`` holds the pid SciCat stored the dataset under, with
no expiry (one short string per rewritten dataset): a rerun months later (``enqueue
--force``, ``audit --enqueue-missing``, ``requeue``) must still find it. Recall falls back to
the file ``ingest-now``/the drop-in keep beside the hash file (``ingest/pid_memo.py``), so a
file first ingested by a command is found by the worker too; and a command whose config
enables the queue recalls from Redis after its file (:class:`CommandPidMemo`), so a file first
ingested by a worker is found by the command.
"""

from __future__ import annotations

import hashlib

import redis

from ..config import Config
from ..errors import QueueUnavailable
from ..ingest.job import Job
from ..ingest.pid_memo import FileMemo
from ..logs import get_logger

__all__ = ["CommandPidMemo", "RedisPidMemo"]

log = get_logger("offline_ingestor.pid_memo")


def _key(file: str, sent_pid: str) -> str:
    digest = hashlib.sha256(f"{file}\0{sent_pid}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"oi:pid:{digest[:40]}"


def _recall(client: redis.Redis, job: Job, sent_pid: str) -> str | None:
    try:
        kept = client.get(_key(job["file"], sent_pid))
    except redis.RedisError as exc:
        # Not "absent": that could create a second dataset. The step is retried.
        raise QueueUnavailable(f"cannot read the pid memo from Redis: {exc}") from None
    if kept:
        return kept.decode() if isinstance(kept, bytes) else str(kept)
    return None


class RedisPidMemo:
    """Keep in Redis; recall from Redis, then from a command's memo file."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.redis = client
        self.files = FileMemo(config.ingestion.file_handling, writable=False)

    def recall(self, job: Job, sent_pid: str) -> str | None:
        return _recall(self.redis, job, sent_pid) or self.files.recall(job, sent_pid)

    def keep(self, job: Job, sent_pid: str, stored_pid: str) -> bool:
        try:
            self.redis.set(_key(job["file"], sent_pid), stored_pid)
        except redis.RedisError as exc:
            log.warning("pid_memo.not_kept", file=job["file"], dataset_pid=stored_pid, error=str(exc))
            return False
        return True


class CommandPidMemo:
    """A command beside workers (``queue.enabled``): keep in its file; recall from it, then Redis.

    The file first: a command whose file answers needs no Redis. Redis unreachable when the
    file has nothing is a transient error (exit 75), as for the worker: "not kept" there
    could be a second dataset.
    """

    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.redis = client
        self.files = FileMemo(config.ingestion.file_handling)

    def recall(self, job: Job, sent_pid: str) -> str | None:
        return self.files.recall(job, sent_pid) or _recall(self.redis, job, sent_pid)

    def keep(self, job: Job, sent_pid: str, stored_pid: str) -> bool:
        return self.files.keep(job, sent_pid, stored_pid)

"""Put files on the queue: the producer side, for the CLI and the online ingestor.

``enqueue(path)`` claims the file's key in Redis (a no-op when it is queued, running or
done), then publishes the five-step chain. Non-Python producers can instead send the Celery
task ``offline_ingestor.submit`` with arguments ``[path]`` and optional kwargs
``{"job_id": str, "force": bool}`` (JSON, queue from ``queue.queue_name``); the worker then
does the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis

from .config import CONFIG_ENV, Config, load_config
from .errors import QueueUnavailable
from .job import Job, new_job
from .job_store import JobStore

__all__ = ["EnqueueResult", "enqueue", "start_chain", "store_for", "submit_job"]


@dataclass(frozen=True)
class EnqueueResult:
    """What happened to one path: ``queued`` or ``already <state>``."""

    key: str
    file: str
    status: str

    @property
    def queued(self) -> bool:
        return self.status == "queued"


def store_for(config: Config) -> JobStore:
    """The job store of the Redis ``config`` names."""
    return JobStore.for_config(config)


def submit_job(
    job: Job, config: Config, *, force: bool = False, store: JobStore | None = None
) -> EnqueueResult:
    """Claim ``job['key']`` and publish its chain; roll the claim back if publishing fails."""
    store = store or store_for(config)
    try:
        claimed, previous = store.claim_for_queue(job, force=force)
        if not claimed:
            return EnqueueResult(job["key"], job["file"], f"already {previous}")
        store.save_doc(job)
        try:
            start_chain(job, config)
        except Exception:
            store.unclaim(job["key"])
            raise
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise QueueUnavailable(
            f"cannot reach Redis at {_redact(config.queue.broker_url)}: {exc}", file=job["file"]
        ) from None
    return EnqueueResult(job["key"], job["file"], "queued")


def start_chain(job: Job, config: Config) -> None:
    """Publish the chain for ``job`` (the caller must have claimed its key)."""
    # Celery is imported when publishing, not when this module is: the spawned drop-in
    # pays for it only when it enqueues.
    from .chain import build_chain
    from .worker import app_for

    build_chain(app_for(config), job, config).apply_async()


def enqueue(
    path: str | os.PathLike[str],
    job_id: str | None = None,
    *,
    force: bool = False,
    config: Config | None = None,
    message_file: str | None = None,
) -> EnqueueResult:
    """Queue one file for ingestion; the config defaults to ``$OFFLINE_INGESTOR_CONFIG``."""
    config = config or load_config(os.environ.get(CONFIG_ENV))
    job = new_job(path, config, job_id=job_id, message_file=message_file)
    return submit_job(job, config, force=force)


def _redact(url: str) -> str:
    """A broker URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def refusal_reason(path: str | os.PathLike[str], config: Config) -> str | None:
    """Why ``path`` cannot be queued (missing, not a file, outside the data roots), or None.

    Checked at enqueue so that a typo is refused on the spot rather than failing later.
    """
    from pathlib import Path

    from .errors import InputFileError
    from .job import check_data_root

    resolved = os.path.realpath(os.path.expanduser(os.fspath(path)))
    try:
        check_data_root(Path(resolved), config)
    except InputFileError as exc:
        return str(exc).removeprefix("refused: ")
    if not os.path.exists(resolved):
        return f"{resolved} does not exist"
    if not os.path.isfile(resolved):
        return f"{resolved} is not a file"
    return None

"""Put files on the queue: the producer side, for the CLI and the online ingestor.

``enqueue(path)`` claims the file's key in Redis (a no-op when it is queued, running or
done), then publishes the five-step chain. Non-Python producers can instead send the Celery
task ``offline_ingestor.submit`` with arguments ``[path]`` and optional kwargs
``{"job_id": str, "force": bool}`` (JSON, queue from ``queue.queue_name``); the worker then
does the same.

All or nothing: the claim is one MULTI (no job document at enqueue); when publishing then fails
the claim is rolled back, and when even the roll-back fails (Redis gone mid-request) the
claim carries the request's id, so the same request retried later re-takes it. When Redis
cannot take the request at all (down, timed out, full, read-only replica) and
``queue.spool_dir`` is set, the request goes to the local spool (queue/spool.py) and the result is
``spooled``; spooled requests are sent first by the next call that finds Redis answering.
"""

from __future__ import annotations

import os

from .config import CONFIG_ENV, Config, load_config
from .ingest.job import Job, new_job
from .queue.job_store import JobStore
from .queue.spool import Spool
from .queue.submission import EnqueueResult, Producer

__all__ = [
    "EnqueueResult",
    "Producer",
    "enqueue",
    "producer_for",
    "start_chain",
    "submit_job",
]


def producer_for(
    config: Config, *, store: JobStore | None = None, spool: Spool | bool | None = True
) -> Producer:
    """A :class:`Producer` that publishes the chain with this process's Celery app."""
    return Producer(config, store=store, spool=spool, publish=lambda job: start_chain(job, config))


def submit_job(
    job: Job,
    config: Config,
    *,
    force: bool = False,
    store: JobStore | None = None,
    spool: Spool | bool | None = True,
) -> EnqueueResult:
    """Claim ``job['key']`` and publish its chain (or spool it); see :class:`Producer`."""
    return producer_for(config, store=store, spool=spool).submit(job, force=force)


def start_chain(job: Job, config: Config) -> None:
    """Publish the chain for ``job`` (the caller must have claimed its key)."""
    # Celery is imported when publishing, not when this module is: the spawned drop-in
    # pays for it only when it enqueues.
    from .worker.app import app_for
    from .worker.chain import build_chain

    build_chain(app_for(config), job, config).apply_async()


def enqueue(
    path: str | os.PathLike[str],
    job_id: str | None = None,
    *,
    force: bool = False,
    config: Config | None = None,
    message_file: str | None = None,
) -> EnqueueResult:
    """Queue one file for ingestion; the config defaults to ``$OFFLINE_INGESTOR_CONFIG``.

    Returns ``spooled`` (not an error) when Redis cannot take the file and the spool can.
    """
    config = config or load_config(os.environ.get(CONFIG_ENV))
    # The one relaxed door: a program queueing its own output may do so before the file is
    # on disk (the writer's job is known first); select-schema refuses it if it never comes.
    job = new_job(
        path, config.ingestion.allowed_data_roots, must_exist=False, job_id=job_id, message_file=message_file
    )
    return submit_job(job, config, force=force)

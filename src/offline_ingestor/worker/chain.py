"""The messages of one file's five steps, built from task names (no import of ``worker/tasks.py``).

Producers (``producer.py``, the CLI, the drop-in) publish the first step without importing
the task module, which would pull in the step code; the worker registers the tasks under
these names.

Each message carries only the file's reference and the errback. A Celery chain would carry
every remaining signature in every message (3.7 KB of the 5.6 KB Redis held per queued
file, bench/RESULTS.md); instead each step task publishes the next step when it is done
(``worker/tasks.py``), exactly where Celery would have published the chain's next message: after
the step, before the ack. ``root_id`` passes from task to task as in a chain, so the lease
owner is the same. Messages of an older version that still carry a chain are continued by
Celery as before.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from celery import Celery

from ..config import Config
from ..ingest.job import Job
from ..ingest.steps import STEPS, WRITE_STEPS
from ..queue.job_store import JobStore
from ..queue.spool import Spool
from ..queue.submission import Producer
from .settings import FIRST_STEP_PRIORITY, STEP_PRIORITY

__all__ = [
    "FAILURE_TASK",
    "SUBMIT_TASK",
    "TASK_NAMES",
    "build_chain",
    "chain_producer",
    "next_step",
    "queue_of",
    "step_of_task",
    "step_signature",
]

#: Step name -> Celery task name.
TASK_NAMES = {step: f"offline_ingestor.{step.replace('-', '_')}" for step in STEPS}
#: The errback of every step: records failures that happened outside the step executor.
FAILURE_TASK = "offline_ingestor.record_failure"
#: The entry point for non-Python producers (see ``producer.py``).
SUBMIT_TASK = "offline_ingestor.submit"


def step_of_task(task_name: str) -> str:
    """The step a task name runs (the name itself when it is not a step task)."""
    return next((step for step, name in TASK_NAMES.items() if name == task_name), task_name)


def next_step(step: str) -> str | None:
    """The step after ``step``; None after the last."""
    index = STEPS.index(step) + 1
    return STEPS[index] if index < len(STEPS) else None


def queue_of(step: str, config: Config, file: str = "") -> str:
    """The queue of ``step``: the write steps go to ``queue.io_queue_name`` when set, and so
    does build-dataset of a ``file`` of at least ``queue.io_hash_min_bytes`` (issue 26: a
    big file's hashing must not hold a prefork process the small files behind it need)."""
    queue = config.queue
    if queue.io_queue_name and step in WRITE_STEPS:
        return queue.io_queue_name
    if queue.io_queue_name and queue.io_hash_min_bytes and step == "build-dataset" and file:
        with contextlib.suppress(OSError):  # gone or unreadable: the step itself reports it
            if os.stat(file).st_size >= queue.io_hash_min_bytes:
                return queue.io_queue_name
    return queue.queue_name


def step_signature(app: Celery, step: str, ref: Job, config: Config) -> Any:
    """The message of ``step`` for the file in ``ref`` (``{key, file}``), with the errback.

    Started files go before new ones (Redis priorities, ``worker/settings.py``), so a long
    backlog does not hold back files that are half done.
    """
    priority = FIRST_STEP_PRIORITY if step == STEPS[0] else STEP_PRIORITY
    signature = app.signature(
        TASK_NAMES[step],
        args=(ref,),
        immutable=True,
        queue=queue_of(step, config, str(ref.get("file") or "")),
        priority=priority,
        # Flower shows the file; Celery's default repeats the whole reference.
        argsrepr=repr(ref["file"]),
        kwargsrepr="",
    )
    # The errback goes to the default queue, which is ``queue.queue_name``.
    signature.link_error(app.signature(FAILURE_TASK))
    return signature


def build_chain(app: Celery, job: Job, config: Config) -> Any:
    """What a producer publishes for ``job``: its first step (each step sends the next).

    The first message carries what the producer knows besides the path (the writer's job
    id, the message file): no document is saved at enqueue (``ingest/executor.py``).
    """
    ref: Job = {"key": job["key"], "file": job["file"]}
    if job.get("job_id"):
        ref["job_id"] = job["job_id"]
    if job.get("message_file"):
        ref["message_file"] = job["message_file"]
    return step_signature(app, STEPS[0], ref, config)


def chain_producer(
    app: Celery, config: Config, *, store: JobStore | None = None, spool: Spool | bool | None = True
) -> Producer:
    """The queue layer's :class:`Producer`, publishing each job's chain with ``app``."""
    return Producer(
        config, store=store, spool=spool, publish=lambda job: build_chain(app, job, config).apply_async()
    )

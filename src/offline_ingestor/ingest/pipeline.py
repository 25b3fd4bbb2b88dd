"""Run the five steps in this process: what ``ingest-now`` and the drop-in do.

The same step executor as the worker's tasks (``ingest/executor.py``), over an in-memory ledger:
same retry policy, logs and metrics; the waits happen here instead of in the broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from ..config import Config
from ..errors import IngestError
from ..files.checksums import Progress
from ..scicat.learned import store_for
from ..scicat.write_order import DatasetOrder
from .executor import Done, Failed, Retry, StepExecutor, Stopped
from .job import Job, new_job
from .ledger import MemoryLedger
from .pid_memo import FileMemo, PidMemo
from .retry import RetryPolicy
from .runtime import Runtime
from .steps import STEPS

__all__ = ["command_runtime", "ingest", "ingest_path"]


def ingest(
    rt: Runtime,
    job: Job,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Job:
    """Run every step (a dry run builds the payloads and writes nothing); return the job.

    Raises the step's :class:`~offline_ingestor.errors.IngestError` when a step fails for
    good, after the policy's retries.
    """
    executor = StepExecutor(
        rt,
        MemoryLedger(),
        policy or RetryPolicy.for_command(rt.config),
        max_redeliveries=rt.config.queue.max_redeliveries,
    )
    owner = f"ingest-now-{uuid.uuid4()}"
    for step in STEPS:
        attempt = 0
        while True:
            outcome = executor.run(step, job, attempt=attempt, owner=owner)
            if isinstance(outcome, Done):
                job = outcome.job
                break
            if isinstance(outcome, Retry):
                sleep(outcome.delay_s)
                attempt += 1
                continue
            raise _error_of(outcome)
    return job


def _error_of(outcome: Failed | Stopped) -> IngestError:
    # A memory ledger is never held by another chain; Stopped would be a bug here.
    return outcome.error if isinstance(outcome, Failed) else IngestError(outcome.reason)


def command_runtime(config: Config, pid_memo: PidMemo | None = None) -> Runtime:
    """The runtime of a command's own process (``ingest-now``, the drop-in).

    ``pid_memo``: where reruns look for a pid SciCat rewrote; by default the file beside the
    hash file (the caller passes one that also reads the workers' Redis when there are workers).
    """
    # One process per file: start from what the last process of this account learnt from
    # SciCat (rights, kept pids) instead of asking again (scicat/learned.py).
    store = store_for(config.scicat)
    rt = Runtime.from_config(config, learned=store)
    rt.command = True  # a libhdf5 crash would end the command: read in a child process
    # A pid SciCat rewrote is kept beside the hash file, where the next run looks.
    rt.pid_memo = pid_memo or FileMemo(config.ingestion.file_handling)
    if store is not None:
        known = store.load()
        rt.dataset_order = DatasetOrder(
            keeps_pids=known.keeps_pids if known is not None else None,
            on_change=lambda keeps_pids: store.note(keeps_pids=keeps_pids),
        )
    return rt


def ingest_path(
    rt: Runtime,
    file: str,
    *,
    job_id: str | None = None,
    message_file: str | None = None,
    progress: Progress | None = None,
) -> Job:
    """Admit ``file`` and run its five steps: ``ingest-now`` and the drop-in's slow path."""
    # Relaxed: a missing file is reported by select-schema, with its step, as any unreadable one.
    job = new_job(
        file,
        rt.config.ingestion.allowed_data_roots,
        must_exist=False,
        job_id=job_id,
        message_file=message_file,
    )
    rt.progress = progress
    return ingest(rt, job)

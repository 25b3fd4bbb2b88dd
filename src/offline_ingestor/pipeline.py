"""Run the five steps in-process, with the retry policy: what ``ingest-now`` does.

This is the synchronous twin of the Celery chain in ``tasks.py``: same step functions,
same retry policy, no broker.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from .errors import IngestError
from .job import Job
from .logs import get_logger
from .retry import RetryPolicy
from .runtime import Runtime
from .steps import STEP_FUNCTIONS, STEPS

__all__ = ["WRITE_STEPS", "ingest", "run_step"]

WRITE_STEPS = ("post-dataset", "post-origdatablock")
log = get_logger("offline_ingestor.pipeline")


def run_step(
    rt: Runtime,
    step: str,
    job: Job,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> Job:
    """Run one step, retrying transient failures; errors leave with ``step`` and ``file`` set."""
    function = STEP_FUNCTIONS[step]
    attempt = 0
    while True:
        started = time.perf_counter()
        try:
            result = function(rt, job)
        except IngestError as exc:
            exc.at(step=step, file=job["file"])
            duration = round((time.perf_counter() - started) * 1000, 1)
            if policy.should_retry(exc, attempt):
                delay = policy.delay(attempt)
                log.warning(
                    "step.retry",
                    step=step,
                    file=job["file"],
                    job_id=job["key"],
                    attempt=attempt,
                    duration_ms=duration,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                sleep(delay)
                attempt += 1
                continue
            log.error(
                "step.failed",
                step=step,
                file=job["file"],
                job_id=job["key"],
                attempt=attempt,
                duration_ms=duration,
                error_class=type(exc).__name__,
                error=str(exc),
            )
            raise
        log.info(
            "step.done",
            step=step,
            file=job["file"],
            job_id=job["key"],
            pid=result.get("pid"),
            attempt=attempt,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result


def ingest(
    rt: Runtime,
    job: Job,
    *,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Job:
    """Run every step (all but the writes when ``dry_run``) and return the final job."""
    if dry_run and not rt.dry_run:
        rt = dataclasses.replace(rt, dry_run=True)
    settings = rt.config.scicat
    policy = policy or RetryPolicy(settings.max_retries, settings.backoff_s, settings.backoff_max_s)
    for step in STEPS:
        if dry_run and step in WRITE_STEPS:
            break
        job = run_step(rt, step, job, policy, sleep)
    return job

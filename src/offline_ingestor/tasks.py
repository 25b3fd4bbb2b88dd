"""The five thin Celery tasks and the chain builder (like Celery's ``proj/tasks.py``).

Each task runs one step function from ``steps.py`` on the job document kept in Redis and
passes ``{"key", "file"}`` on to the next task. Around the step it: refuses to work without
the key's lease (no two chains per file), skips a step already done (redelivery), caps
executions after worker loss, retries transient errors with the policy from ``retry.py``,
and records final failures in the failed registry (the chain's errback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery import Task, chain
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from . import metrics
from .celery_config import FIRST_STEP_PRIORITY, STEP_PRIORITY
from .config import Config
from .errors import IngestError, PermanentError
from .job import Job
from .job_store import JobStore
from .logs import get_logger
from .pipeline import WRITE_STEPS
from .retry import RetryPolicy
from .runtime import Runtime
from .steps import STEP_FUNCTIONS, STEPS
from .worker import app

__all__ = ["TASK_NAMES", "build_chain", "start_chain"]

TASK_NAMES = {step: f"offline_ingestor.{step.replace('-', '_')}" for step in STEPS}
log = get_logger("offline_ingestor.tasks")
_celery_log = get_task_logger(__name__)
_process: dict[str, Any] = {}
T = TypeVar("T")


def _config() -> Config:
    config = app.conf.get("offline_ingestor_config")
    if config is None:
        raise PermanentError("worker has no config: set OFFLINE_INGESTOR_CONFIG")
    return config  # type: ignore[no-any-return]


def _schema_stamp(config: Config) -> tuple[tuple[str, int, int], ...]:
    """Names, mtimes and sizes of the schema files: a change means "load them again"."""
    stamps = []
    fallback = config.ingestion.fallback_schema_file_path
    candidates = [config.resolve(fallback)] if fallback else []
    with contextlib.suppress(OSError):
        candidates += [Path(entry.path) for entry in os.scandir(config.schemas_dir)]
    for path in candidates:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(stamps))


def _runtime() -> Runtime:
    """One runtime per worker process (schemas parsed once, one HTTP session).

    The schemas are parsed again when a schema file changes, so that an operator who fixes
    a schema can ``requeue`` its failed files without restarting the worker.
    """
    config = _config()
    stamp = _schema_stamp(config)
    if "runtime" not in _process or _process.get("schema_stamp") != stamp:
        _process["runtime"] = dataclasses.replace(
            Runtime.from_config(config), dry_run=config.ingestion.dry_run
        )
        _process["schema_stamp"] = stamp
    return _process["runtime"]  # type: ignore[no-any-return]


def _store() -> JobStore:
    if "store" not in _process:
        from .producer import store_for

        _process["store"] = store_for(_config())
    return _process["store"]  # type: ignore[no-any-return]


def _stop_chain(task: Task) -> None:
    # Celery carries the rest of a chain in the request; clearing it ends the chain here.
    task.request.chain = None
    task.request.callbacks = None


def _redo_missing_steps(rt: Runtime, job: Job, step: str) -> Job:
    """Rebuild results of earlier steps if the document was lost (Redis restart, TTL)."""
    needed = {
        "extract": "schema_id",
        "build-dataset": "variables",
        "post-dataset": "dataset",
        "post-origdatablock": "pid",
    }
    for earlier in STEPS[: STEPS.index(step)]:
        if needed.get(step) in job:
            break
        job = STEP_FUNCTIONS[earlier](rt, job)
    return job


def _run(task: Task, step: str, ref: dict[str, str]) -> dict[str, str] | None:
    key, file = ref["key"], ref["file"]
    store, config = _store(), _config()
    owner = task.request.root_id or task.request.id
    start = store.begin_step(key, step, owner)  # one round trip: run count, lease, record, doc
    runs = start.runs
    if runs - task.request.retries > config.queue.max_redeliveries + 1:
        store.record_failure(
            key,
            {
                "file": file,
                "step": step,
                "error_class": "WorkerLost",
                "message": f"worker died {runs - 1} times running {step} (out of memory? crash in HDF5?)",
                "attempts": runs,
            },
        )
        store.release_lease(key, owner)
        store.clear_runs(key, step)  # a requeue after the fix starts counting afresh
        _stop_chain(task)
        return None
    if not start.leased:
        log.warning("chain.duplicate", step=step, file=file, job_id=key, task_id=task.request.id)
        _stop_chain(task)
        return None
    record = start.record
    job = start.doc or {"file": file, "key": key}
    if record is not None and record.step_done(step):
        log.info("step.skipped", step=step, file=file, job_id=key, reason="already done")
        return ref
    rt = _runtime()
    started = time.perf_counter()
    store.update(key, state="running", step=step, attempts=task.request.retries + 1)
    try:
        if rt.dry_run and step in WRITE_STEPS:
            # ingestion.dry_run: the chain runs, builds both payloads, and writes nothing.
            log.info("step.dry_run", step=step, file=file, job_id=key, reason="ingestion.dry_run")
        else:
            job = STEP_FUNCTIONS[step](rt, _redo_missing_steps(rt, job, step))
    except SoftTimeLimitExceeded:
        store.clear_runs(key, step)
        raise PermanentError(f"step {step} exceeded its time limit", step=step, file=file) from None
    except IngestError as exc:
        exc.at(step=step, file=file)
        policy = _policy(config)
        if policy.should_retry(exc, task.request.retries):
            store.update(key, last_error=str(exc))
            log.warning(
                "step.retry", step=step, file=file, job_id=key, attempt=task.request.retries, error=str(exc)
            )
            metrics.count_retry(step)
            # Honour a server's Retry-After, but never wait past the visibility timeout.
            asked = float(getattr(exc, "retry_after", None) or 0.0)
            countdown = max(policy.delay(task.request.retries), min(asked, policy.backoff_max_s))
            raise task.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries) from None
        # Celery hands the errback a rebuilt exception that may lose its class; keep ours.
        store.update(key, last_failure={**exc.to_dict(), "attempts": task.request.retries + 1})
        # Final: forget the executions, or a requeue would look like a crash loop (WorkerLost).
        store.clear_runs(key, step)
        raise
    elapsed = time.perf_counter() - started
    duration = round(elapsed * 1000, 1)
    metrics.observe_step(step, elapsed)
    last = step == STEPS[-1]
    # One round trip: document, "step done" (and "done" after the last step), run count reset.
    store.finish_step(
        job,
        step,
        pid=job.get("pid") or "",
        schema_id=job.get("schema_id", ""),
        **({"state": "done"} if last else {}),
    )
    log.info(
        "step.done",
        step=step,
        file=file,
        job_id=key,
        pid=job.get("pid"),
        attempt=task.request.retries,
        duration_ms=duration,
        task_id=task.request.id,
    )
    if last:
        store.release_lease(key, owner)
        metrics.count_file("created" if job.get("dataset_created") else "duplicate", job.get("schema_id", ""))
        log.info(
            "ingest.finished",
            file=file,
            job_id=key,
            pid=job.get("pid"),
            schema_id=job.get("schema_id"),
            dataset_created=job.get("dataset_created"),
            origdatablock_created=job.get("origdatablock_created"),
        )
    return ref


def _policy(config: Config) -> RetryPolicy:
    queue = config.queue
    return RetryPolicy(queue.max_retries, queue.retry_backoff_s, float(queue.retry_backoff_max_s))


def _make_task(step: str) -> Any:
    @app.task(name=TASK_NAMES[step], bind=True, acks_late=True, reject_on_worker_lost=True)
    def step_task(self: Task, ref: dict[str, str]) -> dict[str, str] | None:
        try:
            return _run(self, step, ref)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Our job store (Redis) went away mid-step. Failing would ack the message and
            # end the chain with the file half done; putting it back (or, if the broker is
            # down too, leaving it unacked until the visibility timeout) runs the step again
            # later, which is safe: steps are idempotent.
            log.warning("step.requeued", step=step, file=ref.get("file"), job_id=ref.get("key"),
                        reason=f"Redis unavailable: {exc}")  # fmt: skip
            raise Reject(exc, requeue=True) from None

    step_task.__doc__ = f"Run step {step} of the ingestion chain."
    return step_task


select_schema_task = _make_task("select-schema")
extract_task = _make_task("extract")
build_dataset_task = _make_task("build-dataset")
post_dataset_task = _make_task("post-dataset")
post_origdatablock_task = _make_task("post-origdatablock")


def _patiently(call: Callable[[], T], attempts: int = 30, pause_s: float = 1.0) -> T:
    """Retry a job-store call through a short Redis outage: the errback runs once only."""
    for _ in range(attempts - 1):
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            time.sleep(pause_s)
    return call()


@app.task(name="offline_ingestor.record_failure")
def record_failure(request: Any, exc: BaseException, traceback: Any) -> None:
    """Errback of every chain: put the file in the failed registry with the reason."""
    ref = request.args[0] if request.args else {}
    key = ref.get("key", "?")
    step = next((step for step, name in TASK_NAMES.items() if name == request.task), request.task)
    store = _store()
    record = _patiently(lambda: store.get(key))
    saved = record.fields.get("last_failure") if record else None
    detail: dict[str, Any] = (
        json.loads(saved)
        if saved
        else {
            "error_class": type(exc).__name__,
            "message": str(exc) or type(exc).__name__,
            "attempts": (request.retries or 0) + 1,
        }
    )
    _patiently(lambda: store.record_failure(key, {**detail, "file": ref.get("file"), "step": step}))
    _patiently(lambda: store.release_lease(key, request.root_id or request.id))
    metrics.count_file("failed", "")
    log.error(
        "ingest.failed",
        file=ref.get("file"),
        job_id=ref.get("key"),
        step=step,
        error_class=detail["error_class"],
        error=detail["message"],
    )


@app.task(name="offline_ingestor.submit")
def submit(path: str, job_id: str | None = None, force: bool = False) -> str:
    """Entry point for non-Python producers: enqueue ``path`` as ``enqueue()`` would."""
    from .job import new_job
    from .producer import submit_job

    config = _config()
    result = submit_job(new_job(path, config, job_id=job_id), config, force=force, store=_store())
    return result.status


def build_chain(job: Job, config: Config) -> Any:
    """The five-task chain for one job, with the failure errback on it."""
    ref = {"key": job["key"], "file": job["file"]}
    tasks = [select_schema_task, extract_task, build_dataset_task, post_dataset_task, post_origdatablock_task]
    signatures = [task.si(ref) if index == 0 else task.s() for index, task in enumerate(tasks)]
    signatures = [
        sig.set(queue=config.queue.queue_name, priority=FIRST_STEP_PRIORITY if index == 0 else STEP_PRIORITY)
        for index, sig in enumerate(signatures)
    ]
    return chain(*signatures).on_error(record_failure.s())


def start_chain(job: Job, config: Config) -> None:
    """Publish the chain for ``job`` (the producer must have claimed its key)."""
    from .worker import app_for

    app_for(config)
    build_chain(job, config).apply_async()

"""The Celery tasks (like Celery's ``proj/tasks.py``): step outcomes mapped onto Celery.

Each step task hands its message to the step executor (``ingest/executor.py``), which holds the
whole exactly-once protocol, and turns the outcome into what Celery understands: return the
reference for the next task, ``retry`` with a countdown, end the chain, or put the message
back when Redis (our ledger) is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from .. import metrics
from ..config import Config
from ..errors import IngestError, PermanentError
from ..ingest.executor import Done, Failed, Retry, StepExecutor, Stopped
from ..ingest.job import Job, new_job
from ..ingest.retry import RetryPolicy
from ..ingest.runtime import RuntimeCache
from ..logs import get_logger
from ..queue.connection import REDIS_TRANSIENT_ERRORS, redis_failure
from ..queue.job_store import JobStore
from ..queue.pid_memo import RedisPidMemo
from ..queue.rate_limit import shared_limiter
from ..queue.sample_lease import RedisSampleLease
from ..queue.scicat_breaker import ScicatBreaker
from .app import app
from .chain import (
    FAILURE_TASK,
    SUBMIT_TASK,
    TASK_NAMES,
    chain_producer,
    next_step,
    step_of_task,
    step_signature,
)
from .running import running_config

__all__ = ["record_failure", "submit"]

log = get_logger("offline_ingestor.tasks")
_process: dict[str, Any] = {}
T = TypeVar("T")


def _config() -> Config:
    config = running_config()
    if config is None:
        raise PermanentError("worker has no config: set OFFLINE_INGESTOR_CONFIG")
    return config  # type: ignore[no-any-return]


def _store() -> JobStore:
    if "store" not in _process:
        _process["store"] = JobStore.for_config(_config())
    return _process["store"]  # type: ignore[no-any-return]


def _runtimes() -> RuntimeCache:
    """This process's runtime (every ``--io`` thread shares it), with the shared rate limit."""
    if "runtimes" not in _process:
        config = _config()
        limiter = shared_limiter(_store().redis, config.scicat.rate_limit_per_s)
        memo = RedisPidMemo(_store().redis, config)  # pids SciCat rewrote, for reruns (issue 25)
        lease = RedisSampleLease(_store().redis)  # one writer per new sample (ingest/samples.py)
        _process["runtimes"] = RuntimeCache(config, limiter=limiter, pid_memo=memo, sample_lease=lease)
    return _process["runtimes"]  # type: ignore[no-any-return]


def _breaker() -> ScicatBreaker:
    """SciCat up or down for every worker (``queue/scicat_breaker.py``), in the job store's Redis."""
    if "breaker" not in _process:
        scicat = _config().scicat
        _process["breaker"] = ScicatBreaker(
            _store().redis,
            probe_s=scicat.outage_probe_s,
            probe_max_s=scicat.outage_probe_max_s,
            probe_lock_s=scicat.timeout + 5,
        )
    return _process["breaker"]  # type: ignore[no-any-return]


def _executor() -> StepExecutor:
    """One per call (cheap), over this process's runtime and job store."""
    config = _config()
    return StepExecutor(
        _runtimes().get,
        _store(),
        RetryPolicy.for_worker(config),
        max_redeliveries=config.queue.max_redeliveries,
        time_limit_errors=(SoftTimeLimitExceeded,),
        ledger_errors=REDIS_TRANSIENT_ERRORS,
        gate=_breaker(),
    )


def _stop_chain(task: Task) -> None:
    # Celery carries the rest of a chain in the request; clearing it ends the chain here.
    task.request.chain = None
    task.request.callbacks = None


def _run(task: Task, step: str, ref: Job) -> Job | None:
    owner = task.request.root_id or task.request.id
    try:
        outcome = _executor().run(
            step, ref, attempt=task.request.retries, owner=owner, message_id=task.request.id or ""
        )
    except REDIS_TRANSIENT_ERRORS as exc:
        # Our job store (Redis) went away mid-step. Failing would ack the message and end
        # the chain with the file half done; putting it back (or, if the broker is down
        # too, leaving it unacked until the visibility timeout) runs the step again later,
        # which is safe: steps are idempotent.
        log.warning("step.requeued", step=step, file=ref.get("file"), key=ref.get("key"),
                    reason=f"Redis unavailable: {exc}")  # fmt: skip
        raise Reject(exc, requeue=True) from None
    match outcome:
        case Done():
            done: Job = {"key": ref["key"], "file": ref["file"]}
            try:
                _send_next(task, step, done)
            except Exception as exc:
                if redis_failure(exc) not in ("refused", "unavailable"):
                    raise
                # The step is done (its record says so) but the next one is not on the queue
                # (Redis full, or gone mid-publish): acking would strand the file. Put this
                # message back: its next delivery skips the step as done and publishes again.
                log.warning("step.requeued", step=step, file=ref.get("file"), key=ref.get("key"),
                            reason=f"next step not published: {exc}")  # fmt: skip
                raise Reject(exc, requeue=True) from None
            return done
        case Retry(delay_s=delay, error=error):
            raise task.retry(exc=error, countdown=delay, max_retries=task.max_retries)
        case Stopped():
            _stop_chain(task)
            return None
        case Failed(error=error):
            # Already in the failed registry; raising marks the task FAILURE for Flower
            # and events, and the errback sees the record and does nothing more.
            _stop_chain(task)
            raise error


def _send_next(task: Task, step: str, ref: Job) -> None:
    """Publish the file's next step (``worker/chain.py``): after the step, before this ack.

    A message of an older version still carries a Celery chain, which Celery continues.
    Celery gives the new message this task's ``root_id``: the same lease owner.
    """
    following = next_step(step)
    if following is None or task.request.chain:
        return
    step_signature(app, following, ref, _config()).apply_async()


def _make_task(step: str) -> Any:
    # max_retries: the executor decides; this only keeps Celery's own limit out of its way.
    # throws: a failure the executor recorded and logged (ingest.failed) is expected, not a
    # traceback at ERROR from Celery too (worker/expected_failures.py).
    @app.task(
        name=TASK_NAMES[step],
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,
        throws=(IngestError,),
    )
    def step_task(self: Task, ref: Job) -> Job | None:
        return _run(self, step, ref)

    step_task.__doc__ = f"Run step {step} of the ingestion chain."
    return step_task


STEP_TASKS = {step: _make_task(step) for step in TASK_NAMES}


def _patiently(call: Callable[[], T], attempts: int = 30, pause_s: float = 1.0) -> T:
    """Retry a job-store call through a short Redis outage: the errback runs once only."""
    for _ in range(attempts - 1):
        try:
            return call()
        except REDIS_TRANSIENT_ERRORS:
            time.sleep(pause_s)
    return call()


@app.task(name=FAILURE_TASK)
def record_failure(request: Any, exc: BaseException, traceback: Any) -> None:
    """Errback of every chain: record a failure the step executor did not record itself."""
    ref = request.args[0] if request.args else {}
    key = ref.get("key", "?")
    store = _store()
    record = _patiently(lambda: store.get(key))
    if record is not None and record.state == "failed":
        return  # the executor recorded it, with the step's own error
    step = step_of_task(request.task)
    failure = {
        "error_class": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "file": ref.get("file"),
        "step": step,
        "attempts": (request.retries or 0) + 1,
    }
    _patiently(lambda: store.fail_step(key, step, request.root_id or request.id, failure))
    metrics.count_failed(record.fields.get("schema_id") if record else None)
    log.error("ingest.failed", file=ref.get("file"), key=key, step=step, error_class=failure["error_class"],
              error=failure["message"])  # fmt: skip


@app.task(name=SUBMIT_TASK, throws=(PermanentError,))  # a refusal is logged as submit.refused
def submit(path: str, job_id: str | None = None, force: bool = False) -> str:
    """Entry point for non-Python producers: enqueue ``path`` as ``enqueue()`` would."""
    config = _config()
    # A refusal (InputFileError) goes to the failed registry through signals' task_failure hook.
    job = new_job(path, config.ingestion.allowed_data_roots, job_id=job_id)
    return chain_producer(app, config, store=_store()).submit(job, force=force).status

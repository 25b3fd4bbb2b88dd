"""Run one attempt of one step: the exactly-once protocol, shared by the worker and ingest-now.

An attempt goes through the same rules wherever it runs (``worker/tasks.py`` maps the outcome onto
Celery; ``ingest/pipeline.py`` loops in-process)::

    begin      count the execution, take or confirm the key's lease (the record then says
               running, unless the step is done), read record + document
      ├─ deaths past the redelivery cap ─────→ Failed   (WorkerLost: the step keeps killing
      │                                                  its process; recorded, lease freed)
      ├─ lease held by another chain ────────→ Stopped  (a duplicate chain ends quietly)
      ├─ step already done ──────────────────→ Done     (skipped: a redelivered message)
      ├─ a lost process's write may still be
      │  on its way to SciCat ───────────────→ Retry    (after it can no longer land)
      └─ a write step while SciCat is down ──→ Retry    (uncounted: after the next probe)
    run        the step function (a dry run skips the SciCat writes)
      ├─ ok ─────────────────────────────────→ Done     (document saved, step marked done;
      │                                                  the last step frees the lease)
      ├─ SciCat down (no answer, 502/503/504
      │  and the breaker confirms it) ───────→ Retry    (uncounted, whatever the retries left)
      ├─ transient error, retries left ──────→ Retry    (delay from the one RetryPolicy,
      │                                                  a server's Retry-After honoured)
      └─ anything else ──────────────────────→ Failed   (failed registry, lease freed)

Deaths: an execution is open in the ledger from ``begin_step`` until it ends here, whatever its
outcome (``end_step``; a finished or failed step clears them all). One still open when the step
begins again, and whose process's heartbeat is gone, died running it: only those count towards
``queue.max_redeliveries``. Executions of another copy of the chain (a resumed or restored
message beside the first), retries and waits for SciCat are not deaths, however many.

SciCat outages: SciCat's availability is one fact for the deployment (a
:class:`~offline_ingestor.ingest.scicat_gate.ScicatGate`; the worker's is a breaker in Redis),
not a per-file retry count. Attempts that waited for SciCat are counted in the record
(``waits:<step>``) and subtracted from the attempt number the retry policy sees, so an outage
of any length spends no file's ``max_retries``. A write whose answer was lost in the outage
keeps its in-flight window: the wait is at least that window, and the retry checks SciCat.

Every outcome is logged as one event (``step.*``/``ingest.*``) with ``file``, ``key``,
``step`` and ``duration_ms``, and counted in the metrics.

Orphaned writes: a write can reach SciCat after its sender stopped waiting for it, and a
step that checks SciCat before it lands sees nothing and posts again (an origdatablock has
no server-side uniqueness). A write is in flight until sent + the request timeout +
:data:`ORPHAN_MARGIN_S` (the *window*). Every write is recorded before it is sent, with
its sender (the step's message: its retries share it), and three rules follow:

* a redelivered write step (its process died) starts only once the lost write's window is
  over;
* an attempt that sent a write and got no answer from SciCat (a timeout, a reset
  connection, a gateway's 502/504: ``ScicatUnavailable.may_still_land``) is retried only
  once that write's window is over;
* one sender per step: a second copy of a step's message (published twice when a process
  died between publishing the next step and its ack) is refused its write while the other
  copy's window is open (:class:`WriteInFlight`), and retried; by then the step is done.

First writes: a write step's first execution (not a redelivery, no write of an earlier
attempt noted in the record) gets a flag in its input (``first_write``). ``post-dataset``
may then POST before looking (its 409 is the look-up; ``scicat/write_order.py``), and
``post-origdatablock`` skips listing the dataset's blocks when this chain created the
dataset under a pid SciCat made: no block of ours can be there (a pid we sent may be one whose
deleted dataset left its blocks behind: those are listed). Every other case (redelivery, a retry after a
write was sent, a record lost with Redis) looks SciCat up first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..current import working_on, writes_noted_by
from ..errors import IngestError, PermanentError, ScicatUnavailable
from ..logs import get_logger
from .job import Job
from .ledger import StepLedger, StepStart
from .retry import RetryPolicy
from .runtime import Runtime
from .scicat_gate import NO_GATE, ScicatGate
from .steps import STEP_FUNCTIONS, STEPS, WRITE_STEPS, StepFunction, with_inputs

__all__ = ["Done", "Failed", "Outcome", "Retry", "StepExecutor", "Stopped", "WriteInFlight"]

log = get_logger("offline_ingestor.executor")

#: Beyond the request timeout, for clocks of two worker hosts that differ a little.
ORPHAN_MARGIN_S = 2.0


@dataclass(frozen=True)
class Done:
    """The step is done (now, or ``skipped`` because it was done before); go on."""

    job: Job
    skipped: bool = False


@dataclass(frozen=True)
class Retry:
    """Run the step again after ``delay_s`` (a transient failure, or a wait; see above)."""

    delay_s: float
    error: IngestError | None = None


@dataclass(frozen=True)
class Failed:
    """A final failure, already in the failed registry: end the chain."""

    error: IngestError


@dataclass(frozen=True)
class Stopped:
    """Another chain holds the file: end this one without recording anything."""

    reason: str


Outcome = Done | Retry | Failed | Stopped


@dataclass(frozen=True)
class _Begun:
    """An attempt allowed to run: the job to run it on, and whether it is the first write."""

    job: Job
    first_write: bool
    #: Attempts of this step so far that waited for SciCat: not the file's retries.
    waits: int = 0


class WriteInFlight(Exception):
    """Another sender's write of this step may still reach SciCat: nothing was sent."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"another execution's write may still reach SciCat for {wait_s:.1f} s")
        self.wait_s = wait_s


class StepExecutor:
    """Runs step attempts for one process against one ledger."""

    def __init__(
        self,
        rt: Runtime | Callable[[], Runtime],
        ledger: StepLedger,
        policy: RetryPolicy,
        *,
        max_redeliveries: int,
        time_limit_errors: tuple[type[BaseException], ...] = (),
        ledger_errors: tuple[type[BaseException], ...] = (),
        functions: Mapping[str, StepFunction] = STEP_FUNCTIONS,
        gate: ScicatGate = NO_GATE,
    ) -> None:
        # A callable is asked after the attempt is counted: loading the schemas (slow, and
        # able to crash on a hostile file) then counts towards the redelivery cap.
        self._runtime = rt if callable(rt) else lambda: rt
        self.ledger = ledger
        self.policy = policy
        self.max_redeliveries = max_redeliveries
        #: Raised inside a step when its time is up (Celery's soft time limit): final.
        self.time_limit_errors = time_limit_errors
        #: The ledger's own outages (Redis unreachable, full): met inside a step too (a write
        #: is noted before it is sent), they leave the attempt to the caller, never fail the file.
        self.ledger_errors = ledger_errors
        #: The step functions (``steps.STEP_FUNCTIONS``; tests put their own).
        self.functions = functions
        #: Whether SciCat is up for the whole deployment (``ingest/scicat_gate.py``).
        self.gate = gate

    @property
    def rt(self) -> Runtime:
        """The runtime the steps run with (the worker's may be reloaded between attempts)."""
        return self._runtime()

    def run(self, step: str, ref: Job, *, attempt: int, owner: str, message_id: str = "") -> Outcome:
        """Run attempt number ``attempt`` (0 = first) of ``step`` for the file in ``ref``.

        ``owner`` names the chain (its root task id, or the ``ingest-now`` run): only the
        owner of the key's lease may work on the file. ``message_id`` names the step's
        message (its retries share it; a duplicate copy has its own): the write sender.
        """
        start = self.ledger.begin_step(ref["key"], step, owner, attempt)
        outcome: Outcome | None = None
        try:
            begun = self._begin(step, ref, start, attempt=attempt, owner=owner)
            if not isinstance(begun, _Begun):
                outcome = begun
                return outcome
            with working_on(ref["key"], ref["file"], step):
                outcome = self._attempt(step, begun, attempt=attempt, owner=owner, sender=message_id or owner)
                return outcome
        finally:
            self._end(ref["key"], step, start.run_id, outcome)

    def _end(self, key: str, step: str, run_id: str, outcome: Outcome | None) -> None:
        """Close the execution in the ledger: it ended here, whatever the outcome; no death."""
        if isinstance(outcome, Failed) or (isinstance(outcome, Done) and not outcome.skipped):
            return  # finish_step / fail_step cleared the step's executions already
        follows = isinstance(outcome, (Retry, Done))
        try:
            self.ledger.end_step(key, step, run_id, message_follows=follows)
        except self.ledger_errors as exc:
            # Redis away: the execution stays open. Its process lives, so it is no death;
            # at worst it is counted as one if that process dies before the step is done.
            log.warning("step.end_not_recorded", step=step, key=key, error=str(exc))

    def _begin(self, step: str, ref: Job, start: StepStart, *, attempt: int, owner: str) -> _Begun | Outcome:
        """The first half of the module docstring's drawing: may this attempt run at all?"""
        key, file = ref["key"], ref["file"]
        # Deaths only: executions of another copy of the chain, retries and waits for SciCat
        # ended (``end_step``); an execution left open by a dead process (SIGKILL, OOM, a
        # crash in libhdf5) did not.
        if start.deaths > self.max_redeliveries:
            lost = PermanentError(
                f"worker died {start.deaths} times running {step} (out of memory? crash in HDF5?)",
                step=step,
                file=file,
            )
            schema_id = (start.doc or {}).get("schema_id", "")
            return self._fail(
                key, step, owner, lost, start.runs, error_class="WorkerLost", schema_id=schema_id
            )
        if not start.leased:
            log.warning(
                "chain.duplicate", step=step, file=file, key=key, reason="another chain holds the file"
            )
            return Stopped("another chain holds the file")
        # The first step starts from its message: a document there is from an earlier run
        # of the file (a forced re-ingest); producers save none (chain.build_chain).
        job: Job = ref if step == STEPS[0] else start.doc or ref
        if start.record is not None and start.record.step_done(step):
            log.info("step.skipped", step=step, file=file, key=key, reason="already done")
            return Done(job, skipped=True)
        redelivered = start.runs - attempt > 1
        if redelivered and step in WRITE_STEPS and start.record is not None:
            wait = self._orphan_wait(start.record.write_started(step), start.record.write_deadline(step))
            if wait > 0:
                log.info("step.waiting", step=step, file=file, key=key, wait_s=round(wait, 2),
                         reason="the lost process's write may still reach SciCat")  # fmt: skip
                return Retry(wait)
        # Only a first execution with no write noted may skip checks for its own writes.
        record = start.record
        waits = record.waits(step) if record is not None else 0
        if step in WRITE_STEPS and not self.rt.dry_run:
            wait = self.gate.wait_s(self._probe)
            if wait > 0:
                return self._wait_for_scicat(step, job, wait, reason="SciCat is down")
        first_write = not redelivered and record is not None and record.write_started(step) is None
        return _Begun(job, first_write, waits)

    def _attempt(self, step: str, begun: _Begun, *, attempt: int, owner: str, sender: str) -> Outcome:
        """The second half: run the step function and map what happened onto an outcome."""
        job = begun.job
        key, file = job["key"], job["file"]
        log.info("step.started", step=step, file=file, key=key, attempt=attempt)
        started = time.perf_counter()
        sent: list[float] = []
        try:
            job = self._call(step, job, first_write=begun.first_write, sender=sender, sent=sent)
        except WriteInFlight as busy:
            log.info("step.waiting", step=step, file=file, key=key, wait_s=round(busy.wait_s, 2),
                     reason="another copy of this step is writing to SciCat")  # fmt: skip
            return Retry(busy.wait_s)
        except Exception as exc:  # everything unexpected is final, never silently retried
            if isinstance(exc, self.ledger_errors):
                raise
            error = self._as_ingest_error(exc, step)
            error.at(step=step, file=file)
            if isinstance(error, ScicatUnavailable) and error.outage:
                wait = self.gate.outage_wait_s(self._probe, str(error))
                if wait is not None:
                    # A write that got no answer keeps its window (module docstring).
                    window = self._orphan_wait(sent[-1]) if sent and error.may_still_land else 0.0
                    self.ledger.note_retry(key, str(error))
                    return self._wait_for_scicat(step, job, wait, reason=str(error), at_least_s=window)
            # Attempts that only waited for SciCat are not the file's retries.
            retries = max(0, attempt - begun.waits)
            if self.policy.should_retry(error, retries):
                return self._retry(step, job, error, attempt=retries, sent=sent, started=started)
            return self._fail(key, step, owner, error, attempt + 1, schema_id=job.get("schema_id", ""))
        return self._finish(job, step, owner, attempt, time.perf_counter() - started)

    def _retry(
        self, step: str, job: Job, error: IngestError, *, attempt: int, sent: list[float], started: float
    ) -> Retry:
        delay = self.policy.delay(attempt, getattr(error, "retry_after", None))
        if sent and isinstance(error, ScicatUnavailable) and error.may_still_land:
            # This attempt's last write timed out on its way: it can still be stored.
            delay = max(delay, self._orphan_wait(sent[-1]))
        self.ledger.note_retry(job["key"], str(error))
        metrics.count_retry(step)
        log.warning(
            "step.retry",
            step=step,
            file=job["file"],
            key=job["key"],
            attempt=attempt,
            duration_ms=_ms_since(started),
            error_class=type(error).__name__,
            error=str(error),
            retry_in_s=round(delay, 2),
        )
        return Retry(delay, error)

    def _wait_for_scicat(
        self, step: str, job: Job, wait_s: float, *, reason: str, at_least_s: float = 0.0
    ) -> Retry:
        """Retry after the breaker's wait, uncounted: SciCat is down, the file did nothing wrong."""
        self.ledger.note_wait(job["key"], step)
        self.gate.note_waiting(job["key"])
        delay = max(self.policy.outage_delay(wait_s), at_least_s)
        log.info("step.waiting", step=step, file=job["file"], key=job["key"], wait_s=round(delay, 2),
                 reason=f"waiting for SciCat: {reason}")  # fmt: skip
        return Retry(delay)

    def _probe(self) -> object:
        """Ask SciCat's health endpoint (the breaker's probe): raises unless SciCat answers."""
        return self.rt.scicat.health()

    def _as_ingest_error(self, exc: Exception, step: str) -> IngestError:
        if isinstance(exc, IngestError):
            return exc
        if isinstance(exc, self.time_limit_errors):
            return PermanentError(f"step {step} exceeded its time limit")
        # A bug or an unforeseen library error: final, with its class in the message so the
        # failed registry says what happened, and its traceback in the log for the fix.
        log.error("step.unexpected_error", step=step, error_class=type(exc).__name__, exc_info=exc)
        return PermanentError(f"{type(exc).__name__}: {exc}")

    def _orphan_wait(self, sent_at: float | None, deadline: float | None = None) -> float:
        """Seconds until a write sent at ``sent_at`` can no longer land (its sender's deadline)."""
        if sent_at is None:
            return 0.0
        if deadline is None:  # noted before deadlines were recorded: our own timeout
            deadline = sent_at + self._window_s()
        return deadline - time.time()

    def _window_s(self) -> float:
        """How long a write may still reach SciCat after it was sent (module docstring)."""
        return self.rt.config.scicat.timeout + ORPHAN_MARGIN_S

    def _call(
        self,
        step: str,
        job: Job,
        *,
        first_write: bool,
        sender: str,
        sent: list[float],
    ) -> Job:
        if self.rt.dry_run and step in WRITE_STEPS:
            log.info(
                "step.dry_run", step=step, file=job["file"], key=job["key"], reason="dry run: nothing written"
            )
            return job
        with self._writes_noted(job["key"], step, sender, sent):
            inputs = with_inputs(self.rt, job, step, self.functions)
            if first_write and step in WRITE_STEPS:
                inputs = {**inputs, "first_write": True}
            result = self.functions[step](self.rt, inputs)
        # A fact about this execution only: never saved in the document.
        result = {**result}
        result.pop("first_write", None)
        return result

    @contextlib.contextmanager
    def _writes_noted(self, key: str, step: str, sender: str, sent: list[float]) -> Iterator[None]:
        """Record each write of the step in the ledger before it is sent; append its time to ``sent``."""
        window = self._window_s()

        def note() -> None:
            at = time.time()
            wait = self.ledger.note_write(key, step, at, writer=sender, window_s=window)
            if wait > 0:
                raise WriteInFlight(wait)
            sent.append(at)

        with writes_noted_by(note):
            yield

    def _finish(self, job: Job, step: str, owner: str, attempt: int, seconds: float) -> Done:
        last = step == STEPS[-1]
        metrics.observe_step(step, seconds)
        # The last step gives the lease up in the same round trip (finish first, then release).
        self.ledger.finish_step(
            job,
            step,
            release=owner if last else "",
            pid=job.get("pid") or "",
            schema_id=job.get("schema_id", ""),
            **({"state": "done"} if last else {}),
        )
        log.info(
            "step.done",
            step=step,
            file=job["file"],
            key=job["key"],
            dataset_pid=job.get("pid"),
            attempt=attempt,
            duration_ms=round(seconds * 1000, 1),
        )
        if last:
            outcome = _file_outcome(job, dry_run=self.rt.dry_run)
            metrics.count_file(outcome, job.get("schema_id", ""))
            log.info(
                "ingest.finished",
                file=job["file"],
                key=job["key"],
                writer_job_id=job.get("job_id"),
                dataset_pid=job.get("pid"),
                schema_id=job.get("schema_id"),
                outcome=outcome,
                dataset_created=job.get("dataset_created"),
                origdatablock_created=job.get("origdatablock_created"),
            )
        return Done(job)

    def _fail(
        self,
        key: str,
        step: str,
        owner: str,
        error: IngestError,
        attempts: int,
        *,
        error_class: str | None = None,
        schema_id: str = "",
    ) -> Failed:
        failure: dict[str, Any] = {
            **error.to_dict(),
            "error_class": error_class or type(error).__name__,
            "attempts": attempts,
        }
        self.ledger.fail_step(key, step, owner, failure)
        metrics.count_failed(schema_id or None)
        log.error(
            "ingest.failed",
            step=step,
            file=error.file,
            key=key,
            error_class=failure["error_class"],
            error=error.message,
            attempts=attempts,
        )
        return Failed(error)


def _file_outcome(job: Job, *, dry_run: bool) -> str:
    if dry_run:
        return "dry_run"
    # A block created now is a first ingestion too (the dataset POST's answer may have been
    # lost, then the dataset found): "duplicate" is only a file SciCat already held whole.
    created = job.get("dataset_created") or job.get("origdatablock_created")
    return "created" if created else "duplicate"


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)

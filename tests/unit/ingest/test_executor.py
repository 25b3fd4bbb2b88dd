"""The step executor's exactly-once rules, against the Redis job store (fakeredis) and memory.

Real workers (tests/worker, tests/reliability) show what only they can: kills, redelivery,
Redis restarts. Here each rule is pinned on its own, with step functions that record calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from structlog.testing import capture_logs

from offline_ingestor.config import parse_config
from offline_ingestor.current import announce_write
from offline_ingestor.errors import PermanentError, ScicatUnavailable, TransientError
from offline_ingestor.ingest.executor import ORPHAN_MARGIN_S, Done, Failed, Retry, StepExecutor, Stopped
from offline_ingestor.ingest.job import Job
from offline_ingestor.ingest.ledger import MemoryLedger, StepLedger
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_OUTPUT, STEPS
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.scicat import ScicatClient

REF: Job = {"key": "k1", "file": "/data/run1.hdf"}
POLICY = RetryPolicy(max_retries=2, backoff_s=1.0, backoff_max_s=8.0)


class Steps:
    """Step functions that add their output key and count their calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.errors: dict[str, list[BaseException]] = {}

    def function(self, step: str) -> Any:
        def run(rt: Runtime, job: Job) -> Job:
            self.calls.append(step)
            if self.errors.get(step):
                raise self.errors[step].pop(0)
            created = {"dataset_created": True} if step == "post-dataset" else {}
            return {**job, STEP_OUTPUT[step]: f"{step}-result", **created}  # type: ignore[typeddict-item]

        return run

    def mapping(self) -> dict[str, Any]:
        return {step: self.function(step) for step in STEPS}


@pytest.fixture(params=["redis", "memory"])
def ledger(request: pytest.FixtureRequest) -> Iterator[StepLedger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    client = fakeredis.FakeRedis(decode_responses=True)
    yield JobStore(client, state_ttl_s=3600, lease_ttl_s=600)
    client.flushall()


@pytest.fixture
def steps() -> Steps:
    return Steps()


def executor(ledger: StepLedger, steps: Steps, *, dry_run: bool = False, **kwargs: Any) -> StepExecutor:
    config = parse_config({"ingestion": {"dry_run": dry_run}})
    rt = Runtime(config=config, schemas=None, scicat=ScicatClient(config.scicat))  # type: ignore[arg-type]
    return StepExecutor(rt, ledger, POLICY, max_redeliveries=2, functions=steps.mapping(), **kwargs)


def record_fields(ledger: StepLedger, key: str = "k1") -> dict[str, str]:
    """The ledger's record of ``key`` as it is (a read that takes no lease)."""
    if isinstance(ledger, MemoryLedger):
        return dict(ledger.records.get(key, {}))
    assert isinstance(ledger, JobStore)
    record = ledger.get(key)
    return dict(record.fields) if record is not None else {}


def failure_of(ledger: StepLedger, key: str = "k1") -> dict[str, Any] | None:
    if isinstance(ledger, MemoryLedger):
        return ledger.failed.get(key)
    assert isinstance(ledger, JobStore)
    return ledger.failure(key)


def test_a_step_runs_and_the_next_step_gets_its_result(ledger: StepLedger, steps: Steps) -> None:
    """A step's output is saved and handed to the next step, on any process."""
    # Given an executor over the ledger
    run = executor(ledger, steps)
    # When two steps run one after the other, each given only the reference
    first = run.run("select-schema", REF, attempt=0, owner="chain-a")
    second = run.run("extract", REF, attempt=0, owner="chain-a")
    # Then each ran once, and the second found the first's result in the saved document
    assert isinstance(first, Done) and isinstance(second, Done)
    assert steps.calls == ["select-schema", "extract"]
    assert second.job["schema_id"] == "select-schema-result"


def test_another_chains_lease_stops_this_chain(ledger: StepLedger, steps: Steps) -> None:
    """While one chain holds the file, a second chain for it stops without running anything."""
    # Given chain A has started the file
    run = executor(ledger, steps)
    run.run("select-schema", REF, attempt=0, owner="chain-a")
    # When chain B (a forced enqueue, a duplicate message) reaches a step of the same file
    outcome = run.run("select-schema", REF, attempt=0, owner="chain-b")
    # Then B stops and no step ran for it
    assert isinstance(outcome, Stopped)
    assert steps.calls == ["select-schema"]


def test_a_step_runs_with_its_record_saying_so(ledger: StepLedger, steps: Steps) -> None:
    """While a step runs, its record says running, which step, which attempt (begin_step marks it)."""
    seen: list[tuple[str, str, str]] = []

    def extract(rt: Runtime, job: Job) -> Job:
        fields = record_fields(ledger)
        seen.append((fields["state"], fields["step"], fields["attempts"]))
        return {**job, "variables": {}}  # type: ignore[typeddict-item]

    run = executor(ledger, steps)
    run.functions = {**steps.mapping(), "extract": extract}
    assert isinstance(run.run("extract", REF, attempt=1, owner="chain-a"), Done)
    assert seen == [("running", "extract", "2")]


def test_a_redelivered_step_that_is_done_is_skipped(ledger: StepLedger, steps: Steps) -> None:
    """A step whose ``step:<name>=done`` is recorded does not run again (no second POST)."""
    # Given post-dataset finished, but its message came back (worker lost before the ack)
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    # When the same step is delivered again
    with capture_logs() as logs:
        outcome = run.run("post-dataset", REF, attempt=0, owner="chain-a")
    # Then it is skipped: done, with the saved result, and the function is not called
    assert isinstance(outcome, Done) and outcome.skipped
    assert outcome.job["pid"] == "post-dataset-result"
    assert steps.calls.count("post-dataset") == 1
    assert [entry["event"] for entry in logs] == ["step.skipped"]


def test_a_late_copy_of_any_step_of_a_finished_file_is_skipped(ledger: StepLedger, steps: Steps) -> None:
    """A finished record keeps no per-step flags in Redis (the last step drops them): every
    step of it still reads as done, so a late copy of any step writes nothing."""
    # Given the whole chain finished
    run = executor(ledger, steps)
    for step in STEPS:
        run.run(step, REF, attempt=0, owner="chain-a")
    # When a copy of each step comes back (a restored message, a redelivery after a lost ack)
    outcomes = [run.run(step, REF, attempt=0, owner="chain-a") for step in STEPS]
    # Then none ran again
    assert all(isinstance(outcome, Done) and outcome.skipped for outcome in outcomes)
    assert steps.calls == list(STEPS)


def test_redelivery_cap_fails_the_file_as_worker_lost(ledger: StepLedger, steps: Steps) -> None:
    """A step that kills its process each time fails as WorkerLost after the cap."""
    # Given extract began max_redeliveries + 1 times and never finished (the process died)
    run = executor(ledger, steps)
    run.run("select-schema", REF, attempt=0, owner="chain-a")
    for _ in range(3):
        ledger.begin_step("k1", "extract", "chain-a")
    # When it is delivered once more
    outcome = run.run("extract", REF, attempt=0, owner="chain-a")
    # Then the file is failed as WorkerLost at that step, without running it
    assert isinstance(outcome, Failed)
    assert "extract" not in steps.calls
    failure = failure_of(ledger)
    assert failure is not None
    assert (failure["error_class"], failure["step"], failure["attempts"]) == ("WorkerLost", "extract", 4)
    # And the lease is free and the count reset: a requeue after the fix starts afresh
    again = run.run("extract", REF, attempt=0, owner="chain-b")
    assert isinstance(again, Done)


def test_retries_do_not_count_as_redeliveries(ledger: StepLedger, steps: Steps) -> None:
    """Executions that are the policy's own retries never trigger the redelivery cap."""
    # Given a step that failed transiently twice and was retried each time
    steps.errors["select-schema"] = [TransientError("busy"), TransientError("busy")]
    run = executor(ledger, steps)
    outcomes = [run.run("select-schema", REF, attempt=attempt, owner="chain-a") for attempt in range(3)]
    # Then the third attempt runs the step and succeeds
    assert [type(outcome) for outcome in outcomes] == [Retry, Retry, Done]


def test_lost_document_is_rebuilt_by_running_earlier_steps(ledger: StepLedger, steps: Steps) -> None:
    """When the job document is gone (Redis lost it), the earlier steps run again first."""
    # Given a chain whose document vanished before build-dataset
    run = executor(ledger, steps)
    # When build-dataset runs with only the reference
    outcome = run.run("build-dataset", REF, attempt=0, owner="chain-a")
    # Then select-schema and extract ran again, then build-dataset
    assert isinstance(outcome, Done)
    assert steps.calls == ["select-schema", "extract", "build-dataset"]
    assert outcome.job["variables"] == "extract-result"


def test_transient_error_is_retried_with_backoff(ledger: StepLedger, steps: Steps) -> None:
    """A transient error gives Retry with the policy's delay while retries remain."""
    steps.errors["select-schema"] = [ScicatUnavailable("503")]
    outcome = executor(ledger, steps).run("select-schema", REF, attempt=0, owner="chain-a")
    assert isinstance(outcome, Retry)
    assert 0.5 <= outcome.delay_s <= 1.0
    assert failure_of(ledger) is None


def test_retry_after_is_honoured_up_to_the_cap(ledger: StepLedger, steps: Steps) -> None:
    """A server's Retry-After sets the least delay, never past backoff_max_s."""
    steps.errors["select-schema"] = [
        ScicatUnavailable("429", status=429, retry_after=5.0),
        ScicatUnavailable("429", status=429, retry_after=600.0),
    ]
    run = executor(ledger, steps)
    asked = run.run("select-schema", REF, attempt=0, owner="chain-a")
    capped = run.run("select-schema", REF, attempt=1, owner="chain-a")
    assert isinstance(asked, Retry) and asked.delay_s >= 5.0
    assert isinstance(capped, Retry) and capped.delay_s == POLICY.backoff_max_s


def test_transient_error_after_the_last_retry_fails(ledger: StepLedger, steps: Steps) -> None:
    """When the retries are used up, the file is failed with the step's error."""
    steps.errors["extract"] = [ScicatUnavailable("SciCat down")]
    outcome = executor(ledger, steps).run("extract", REF, attempt=POLICY.max_retries, owner="c")
    assert isinstance(outcome, Failed)
    failure = failure_of(ledger)
    assert failure is not None
    assert (failure["error_class"], failure["attempts"]) == ("ScicatUnavailable", POLICY.max_retries + 1)


def test_permanent_error_fails_at_once_and_frees_the_file(ledger: StepLedger, steps: Steps) -> None:
    """A permanent error is never retried: failed registry with step and message, lease freed."""
    steps.errors["extract"] = [PermanentError("no such NeXus path /entry/title")]
    run = executor(ledger, steps)
    outcome = run.run("extract", REF, attempt=0, owner="chain-a")
    assert isinstance(outcome, Failed)
    failure = failure_of(ledger)
    assert failure is not None
    assert failure["step"] == "extract" and failure["file"] == "/data/run1.hdf"
    assert failure["message"] == "no such NeXus path /entry/title"
    assert isinstance(run.run("extract", REF, attempt=0, owner="chain-b"), Done)


def test_unexpected_exception_is_final_and_named(ledger: StepLedger, steps: Steps) -> None:
    """A bug (not an IngestError) fails the file with the exception's class, never retried."""
    steps.errors["extract"] = [KeyError("variables")]
    outcome = executor(ledger, steps).run("extract", REF, attempt=0, owner="chain-a")
    assert isinstance(outcome, Failed)
    assert "KeyError" in outcome.error.message


def test_time_limit_is_final(ledger: StepLedger, steps: Steps) -> None:
    """The runner's time-limit exception ends the file with a clear reason."""

    class SoftLimit(Exception):
        pass

    steps.errors["build-dataset"] = [SoftLimit()]
    run = executor(ledger, steps, time_limit_errors=(SoftLimit,))
    outcome = run.run("build-dataset", REF, attempt=0, owner="chain-a")
    assert isinstance(outcome, Failed)
    assert outcome.error.message == "step build-dataset exceeded its time limit"


def test_last_step_marks_done_and_releases_the_lease(ledger: StepLedger, steps: Steps) -> None:
    """After post-origdatablock the file is done and another chain may take it (--force)."""
    run = executor(ledger, steps)
    with capture_logs() as logs:
        for step in STEPS:
            run.run(step, REF, attempt=0, owner="chain-a")
    finished = [entry for entry in logs if entry["event"] == "ingest.finished"]
    assert len(finished) == 1 and finished[0]["outcome"] == "created"
    assert isinstance(run.run("select-schema", REF, attempt=0, owner="chain-b"), Done)


def test_dry_run_skips_the_writes_and_counts_no_duplicate(ledger: StepLedger, steps: Steps) -> None:
    """A dry run runs the local steps, calls neither POST step, and is not a duplicate."""
    run = executor(ledger, steps, dry_run=True)
    with capture_logs() as logs:
        outcomes = [run.run(step, REF, attempt=0, owner="chain-a") for step in STEPS]
    assert all(isinstance(outcome, Done) for outcome in outcomes)
    assert steps.calls == ["select-schema", "extract", "build-dataset"]
    finished = next(entry for entry in logs if entry["event"] == "ingest.finished")
    assert finished["outcome"] == "dry_run"


def test_every_attempt_logs_started_then_one_outcome(ledger: StepLedger, steps: Steps) -> None:
    """Each attempt logs step.started (file, key, step) and then exactly one outcome event."""
    steps.errors["select-schema"] = [TransientError("busy")]
    run = executor(ledger, steps)
    with capture_logs() as logs:
        run.run("select-schema", REF, attempt=0, owner="chain-a")
        run.run("select-schema", REF, attempt=1, owner="chain-a")
    events = [(entry["event"], entry["key"], entry["file"], entry["step"]) for entry in logs]
    assert [event for event, *_ in events] == ["step.started", "step.retry", "step.started", "step.done"]
    assert {tuple(rest) for _, *rest in events} == {("k1", "/data/run1.hdf", "select-schema")}


def note_write(ledger: StepLedger, step: str, at: float, writer: str = "chain-a") -> float:
    """What the step's client notes before a write (the sender is the step's message)."""
    window = parse_config({}).scicat.timeout + ORPHAN_MARGIN_S  # the sender's own timeout
    return ledger.note_write("k1", step, at, writer=writer, window_s=window)


def lose_the_process_after_its_write(run: StepExecutor, ledger: StepLedger, sent_ago_s: float) -> None:
    """post-dataset sent its POST ``sent_ago_s`` ago, then its process died (no finish)."""
    for step in STEPS[:3]:
        run.run(step, REF, attempt=0, owner="chain-a")
    ledger.begin_step("k1", "post-dataset", "chain-a")
    note_write(ledger, "post-dataset", time.time() - sent_ago_s)


def test_redelivered_write_waits_until_an_orphaned_write_has_landed(ledger: StepLedger, steps: Steps) -> None:
    """A write step redelivered after a kill mid-POST waits out the request timeout first."""
    # Given post-dataset's process died one second after sending its POST
    run = executor(ledger, steps)
    lose_the_process_after_its_write(run, ledger, sent_ago_s=1.0)
    # When the step is redelivered
    with capture_logs() as logs:
        outcome = run.run("post-dataset", REF, attempt=0, owner="chain-a")
    # Then it does not look at SciCat yet: it retries once the POST can no longer be in flight
    timeout = run.rt.config.scicat.timeout
    assert isinstance(outcome, Retry) and outcome.error is None
    assert timeout - 1.0 < outcome.delay_s <= timeout - 1.0 + ORPHAN_MARGIN_S
    assert "post-dataset" not in steps.calls
    assert [entry["event"] for entry in logs] == ["step.waiting"]
    # And once that time has passed (the retry), it runs
    again = run.run("post-dataset", REF, attempt=1, owner="chain-a")
    assert isinstance(again, Retry)  # still within the window in this test's clock
    note_write(ledger, "post-dataset", time.time() - 3600)
    assert isinstance(run.run("post-dataset", REF, attempt=1, owner="chain-a"), Done)


def test_write_step_that_never_lost_a_process_does_not_wait(ledger: StepLedger, steps: Steps) -> None:
    """A first delivery, or a retry after an answered error, checks SciCat at once."""
    run = executor(ledger, steps)
    for step in STEPS[:3]:
        run.run(step, REF, attempt=0, owner="chain-a")
    note_write(ledger, "post-dataset", time.time())
    assert isinstance(run.run("post-dataset", REF, attempt=0, owner="chain-a"), Done)


def test_writes_are_recorded_before_they_are_sent(ledger: StepLedger, steps: Steps) -> None:
    """The step's SciCat client notes each write in the ledger before sending it."""
    run = executor(ledger, steps)
    for step in STEPS[:3]:
        run.run(step, REF, attempt=0, owner="chain-a")
    seen: list[float | None] = []

    def post(rt: Runtime, job: Job) -> Job:
        announce_write()  # what create_dataset does first
        record = ledger.begin_step("k1", "probe", "chain-a").record
        seen.append(record.write_started("post-dataset") if record else None)
        return {**job, "pid": "p"}

    run.functions = {**run.functions, "post-dataset": post}
    before = time.time()
    run.run("post-dataset", REF, attempt=0, owner="chain-a")
    assert seen and seen[0] is not None and seen[0] >= before
    time.sleep(0.01)
    announce_write()  # outside any step: the hook was not left behind for the next one
    record = ledger.begin_step("k1", "probe", "chain-a").record
    assert record is not None and record.write_started("post-dataset") == seen[0]


def test_a_second_copy_of_a_write_step_may_not_write_while_the_first_may(
    ledger: StepLedger, steps: Steps
) -> None:
    """Two copies of one step's message run at once: one sends its write, the other waits."""
    # Given the block step's message was published twice and two processes run the copies,
    # both past their checks of SciCat before either has written
    first, second = executor(ledger, steps), executor(ledger, steps)
    for step in STEPS[:4]:
        first.run(step, REF, attempt=0, owner="chain-a")
    sends: list[str] = []
    checked, first_sent = threading.Event(), threading.Event()

    def post_second(rt: Runtime, job: Job) -> Job:
        checked.set()
        first_sent.wait(5)
        announce_write()  # what create_origdatablock does before sending
        sends.append("second")
        return {**job, "origdatablock_id": "b2"}

    def post_first(rt: Runtime, job: Job) -> Job:
        announce_write()
        sends.append("first")
        first_sent.set()
        return {**job, "origdatablock_id": "b1"}

    second.functions = {**second.functions, "post-origdatablock": post_second}
    first.functions = {**first.functions, "post-origdatablock": post_first}
    outcomes: list[Any] = []
    copy = threading.Thread(
        target=lambda: outcomes.append(
            second.run("post-origdatablock", REF, attempt=0, owner="chain-a", message_id="m2")
        )
    )
    copy.start()
    checked.wait(5)
    # When both reach their write
    done = first.run("post-origdatablock", REF, attempt=0, owner="chain-a", message_id="m1")
    copy.join(5)
    # Then one write was sent; the other copy waits the first write's window, then skips
    assert isinstance(done, Done) and sends == ["first"]
    assert isinstance(outcomes[0], Retry) and outcomes[0].delay_s > first.rt.config.scicat.timeout
    later = second.run("post-origdatablock", REF, attempt=1, owner="chain-a", message_id="m2")
    assert isinstance(later, Done) and later.skipped and sends == ["first"]


def test_retries_of_one_message_keep_their_write(ledger: StepLedger, steps: Steps) -> None:
    """The sender is the message: its own retry may write again (after waiting its window)."""
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    assert note_write(ledger, "post-origdatablock", time.time(), writer="m1") == 0
    assert note_write(ledger, "post-origdatablock", time.time(), writer="m1") == 0
    assert note_write(ledger, "post-origdatablock", time.time(), writer="m2") > 30.0


def test_a_write_whose_window_is_over_may_be_taken_over(ledger: StepLedger, steps: Steps) -> None:
    """Once the other sender's write can no longer land (a lost process), another may write."""
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    note_write(ledger, "post-origdatablock", time.time() - 60, writer="m1")
    assert note_write(ledger, "post-origdatablock", time.time(), writer="m2") == 0
    assert note_write(ledger, "post-origdatablock", time.time(), writer="m1") > 0  # now m2's


def test_a_retry_after_a_failed_write_waits_until_it_cannot_land(ledger: StepLedger, steps: Steps) -> None:
    """A POST that timed out may still be stored: the retry looks at SciCat after its window."""
    # Given a block POST that is sent and then times out
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")

    def post(rt: Runtime, job: Job) -> Job:
        announce_write()
        raise ScicatUnavailable("SciCat POST origdatablocks timed out")  # no status: no answer

    run.functions = {**run.functions, "post-origdatablock": post}
    # When the attempt ends
    outcome = run.run("post-origdatablock", REF, attempt=0, owner="chain-a", message_id="m1")
    # Then it is retried, not after the policy's 1 s but once that POST can no longer land
    timeout = run.rt.config.scicat.timeout
    assert isinstance(outcome, Retry) and timeout < outcome.delay_s <= timeout + ORPHAN_MARGIN_S


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_retry_after_an_answered_write_keeps_the_policy_delay(
    ledger: StepLedger, steps: Steps, status: int
) -> None:
    """SciCat itself answered the write (a 5xx or 429): nothing is in flight, no window."""
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")

    def post(rt: Runtime, job: Job) -> Job:
        announce_write()
        raise ScicatUnavailable(f"SciCat answered {status}", status=status)

    run.functions = {**run.functions, "post-origdatablock": post}
    outcome = run.run("post-origdatablock", REF, attempt=0, owner="chain-a", message_id="m1")
    assert isinstance(outcome, Retry) and outcome.delay_s <= POLICY.backoff_s


def test_a_retry_after_a_failed_read_keeps_the_policy_delay(ledger: StepLedger, steps: Steps) -> None:
    """No write sent in the attempt (a GET timed out): the policy's delay, no window."""
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    steps.errors["post-origdatablock"] = [ScicatUnavailable("SciCat GET timed out")]
    outcome = run.run("post-origdatablock", REF, attempt=0, owner="chain-a", message_id="m1")
    assert isinstance(outcome, Retry) and outcome.delay_s <= POLICY.backoff_s


def flags_seen(run: StepExecutor, step: str) -> list[bool | None]:
    """Replace ``step`` by a function that records the ``first_write`` flag it is given."""
    seen: list[bool | None] = []
    inner = run.functions[step]

    def probe(rt: Runtime, job: Job) -> Job:
        seen.append(job.get("first_write"))
        return inner(rt, job)

    run.functions = {**run.functions, step: probe}
    return seen


def test_a_first_write_is_flagged_and_the_flag_is_not_saved(ledger: StepLedger, steps: Steps) -> None:
    """The first execution of a write step gets ``first_write``; the document never keeps it."""
    run = executor(ledger, steps)
    seen = flags_seen(run, "post-origdatablock")
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    outcome = run.run("post-origdatablock", REF, attempt=0, owner="chain-a")
    assert seen == [True]
    assert isinstance(outcome, Done) and "first_write" not in outcome.job
    assert "first_write" not in (ledger.begin_step("k1", "probe", "chain-a").doc or {})


def test_a_redelivered_write_is_not_a_first_write(ledger: StepLedger, steps: Steps) -> None:
    """After a lost process (an execution that never finished), the step must look at SciCat."""
    run = executor(ledger, steps)
    seen = flags_seen(run, "post-origdatablock")
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    ledger.begin_step("k1", "post-origdatablock", "chain-a")  # the lost execution
    run.run("post-origdatablock", REF, attempt=0, owner="chain-a")
    assert seen == [None]


def test_a_retry_after_a_sent_write_is_not_a_first_write(ledger: StepLedger, steps: Steps) -> None:
    """A retry after an attempt whose POST went out (e.g. it timed out) may find that block."""
    run = executor(ledger, steps)
    seen = flags_seen(run, "post-origdatablock")
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    steps.errors["post-origdatablock"] = [ScicatUnavailable("timed out")]
    first = run.run("post-origdatablock", REF, attempt=0, owner="chain-a")
    assert isinstance(first, Retry)
    note_write(ledger, "post-origdatablock", time.time())  # what the failed POST noted
    run.run("post-origdatablock", REF, attempt=1, owner="chain-a")
    assert seen == [True, None]


def test_a_retry_without_a_sent_write_is_still_a_first_write(ledger: StepLedger, steps: Steps) -> None:
    """An attempt that failed before writing (a GET timed out) leaves the next one first."""
    run = executor(ledger, steps)
    seen = flags_seen(run, "post-origdatablock")
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    steps.errors["post-origdatablock"] = [ScicatUnavailable("timed out")]
    run.run("post-origdatablock", REF, attempt=0, owner="chain-a")
    run.run("post-origdatablock", REF, attempt=1, owner="chain-a")
    assert seen == [True, True]


def test_the_first_step_starts_from_its_message_not_an_old_document(ledger: StepLedger, steps: Steps) -> None:
    """A forced re-ingest finds the last run's document; the first step must not resume it."""
    # Given a file ingested before (its document holds a pid), then queued again
    run = executor(ledger, steps)
    for step in STEPS:
        run.run(step, REF, attempt=0, owner="chain-a")
    ledger.release_lease("k1", "chain-a")
    if isinstance(ledger, MemoryLedger):
        ledger.records.clear()
    else:
        assert isinstance(ledger, JobStore)
        ledger.redis.delete("oi:job:k1")  # what a forced claim does to the record
    # When the new chain's first step runs with the message's reference and job id
    outcome = run.run("select-schema", {**REF, "job_id": "writer-7"}, attempt=0, owner="chain-b")
    # Then its result is built from the message alone: no pid of the last run is carried on
    assert isinstance(outcome, Done)
    assert outcome.job.get("job_id") == "writer-7" and "pid" not in outcome.job


def test_runtime_is_loaded_after_the_attempt_is_counted(ledger: StepLedger, steps: Steps) -> None:
    """Loading the schemas happens inside the counted attempt: a crash there meets the cap."""
    counted: list[int] = []

    def runs() -> int:
        if isinstance(ledger, MemoryLedger):
            return ledger.runs.get(("k1", "select-schema"), 0)
        assert isinstance(ledger, JobStore)
        return int(ledger.redis.hget("oi:runs:k1:select-schema", "runs") or 0)

    built = executor(ledger, steps)
    rt = built.rt

    def load() -> Runtime:
        counted.append(runs())
        return rt

    run = StepExecutor(load, ledger, POLICY, max_redeliveries=2, functions=steps.mapping())
    assert isinstance(run.run("select-schema", REF, attempt=0, owner="chain-a"), Done)
    assert counted and counted[0] == 1


def test_a_ledger_outage_inside_a_step_leaves_the_attempt_to_the_caller(
    ledger: StepLedger, steps: Steps
) -> None:
    """Redis full while a write is noted: the attempt is handed back (requeued), not failed."""

    class Full(Exception):
        pass

    def post(rt: Runtime, job: Job) -> Job:
        raise Full("OOM command not allowed")  # what note_write meets at maxmemory

    run = executor(ledger, steps, ledger_errors=(Full,))
    for step in STEPS[:3]:
        run.run(step, REF, attempt=0, owner="chain-a")
    run.functions = {**run.functions, "post-dataset": post}
    with pytest.raises(Full):
        run.run("post-dataset", REF, attempt=0, owner="chain-a")
    assert failure_of(ledger) is None


def test_a_finished_file_keeps_its_record_and_no_document(ledger: StepLedger, steps: Steps) -> None:
    """After the last step only the record stays (done, pid); a late copy of that step skips."""
    run = executor(ledger, steps)
    for step in STEPS:
        assert isinstance(run.run(step, REF, attempt=0, owner="chain-a"), Done)
    start = ledger.begin_step("k1", STEPS[-1], "chain-a")  # what a late copy of the step sees
    assert start.doc is None and start.record is not None and start.record.state == "done"
    late = run.run(STEPS[-1], REF, attempt=0, owner="chain-a")
    assert isinstance(late, Done) and late.skipped


def test_the_senders_deadline_counts_not_the_waiting_copys(ledger: StepLedger, steps: Steps) -> None:
    """A sender with a longer timeout (another host's config) keeps its write's window."""
    run = executor(ledger, steps)
    for step in STEPS[:4]:
        run.run(step, REF, attempt=0, owner="chain-a")
    sent = time.time() - 20
    ledger.note_write("k1", "post-origdatablock", sent, writer="m1", window_s=60.0)
    left = ledger.note_write("k1", "post-origdatablock", time.time(), writer="m2", window_s=5.0)
    assert 39.0 < left <= 40.0

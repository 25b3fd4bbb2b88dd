"""The redelivery cap counts deaths of a holder, not executions (the chaos case's seed 40717).

Two copies of a file's chain (a resumed message beside a retry that was alive) both ran
post-dataset while SciCat was down; every execution of either counted towards
``queue.max_redeliveries`` and one copy failed the file "worker died 15 times" while the other
finished it. A death is an execution left open by a process that is gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from offline_ingestor.config import parse_config
from offline_ingestor.ingest.executor import Done, Failed, Retry, StepExecutor
from offline_ingestor.ingest.job import Job
from offline_ingestor.ingest.ledger import MemoryLedger, StepLedger
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.scicat_gate import Probe
from offline_ingestor.ingest.steps import STEP_OUTPUT, STEPS
from offline_ingestor.queue import heartbeats
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.scicat import ScicatClient

REF: Job = {"key": "k1", "file": "/data/run1.hdf"}
POLICY = RetryPolicy(max_retries=2, backoff_s=1.0, backoff_max_s=8.0)
MAX_REDELIVERIES = 2


class Gate:
    """SciCat down or up, as the breaker would say it."""

    def __init__(self) -> None:
        self.down = False

    def wait_s(self, probe: Probe) -> float:
        return 0.5 if self.down else 0.0

    def outage_wait_s(self, probe: Probe, reason: str) -> float | None:
        return 0.5 if self.down else None

    def note_waiting(self, key: str) -> None:
        return None


def passing(step: str) -> Any:
    def run(rt: Runtime, job: Job) -> Job:
        return {**job, STEP_OUTPUT[step]: f"{step}-result"}  # type: ignore[typeddict-item]

    return run


@pytest.fixture(params=["redis", "memory"])
def ledger(request: pytest.FixtureRequest) -> Iterator[StepLedger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    yield JobStore(fakeredis.FakeRedis(decode_responses=True), state_ttl_s=3600, lease_ttl_s=600)


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis(decode_responses=True), state_ttl_s=3600, lease_ttl_s=600)


def executor(ledger: StepLedger, gate: Gate) -> StepExecutor:
    config = parse_config({})
    rt = Runtime(config=config, schemas=None, scicat=ScicatClient(config.scicat))  # type: ignore[arg-type]
    functions = {step: passing(step) for step in STEPS}
    return StepExecutor(rt, ledger, POLICY, max_redeliveries=MAX_REDELIVERIES, functions=functions, gate=gate)


def failed(ledger: StepLedger) -> dict[str, Any] | None:
    if isinstance(ledger, MemoryLedger):
        return ledger.failed.get("k1")
    assert isinstance(ledger, JobStore)
    return ledger.failure("k1")


def as_process(monkeypatch: pytest.MonkeyPatch, name: str, store: JobStore, *, alive: bool = True) -> None:
    """Make this test process the worker process ``name`` (its heartbeat key set if alive;
    ``begin_step`` writes it too, as a pool process's does)."""
    beat = heartbeats.ProcessHeartbeat(lambda: store.redis, interval_s=5, ttl_s=30)
    beat.ident, beat.name = name, f"{heartbeats.PROC_PREFIX}{name}"
    monkeypatch.setitem(heartbeats._BEATING, os.getpid(), beat)
    if alive:
        store.redis.set(f"{heartbeats.PROC_PREFIX}{name}", "{}")


def test_two_copies_waiting_for_scicat_never_reach_the_cap(ledger: StepLedger) -> None:
    """A resumed copy beside the retrying one: both wait for SciCat again and again, each
    execution ends; none is a death, so the file is never failed, and it finishes once."""
    # Given a file at post-dataset, and SciCat down
    gate = Gate()
    run = executor(ledger, gate)
    for step in STEPS[:3]:
        assert isinstance(run.run(step, REF, attempt=0, owner="chain-a"), Done)
    gate.down = True
    # When two copies of the step (the retrying one, and a resumed one from attempt 0) run in
    # turn, ten times each: far beyond the cap of executions the old count allowed
    outcomes = []
    for attempt in range(10):
        outcomes.append(run.run("post-dataset", REF, attempt=attempt + 3, owner="chain-a"))
        outcomes.append(run.run("post-dataset", REF, attempt=attempt, owner="chain-a"))
    # Then every execution waited (none failed as WorkerLost) and nothing is in the registry
    assert {type(outcome) for outcome in outcomes} == {Retry}, outcomes
    assert failed(ledger) is None
    # And once SciCat is back one copy posts, the other finds the step done
    gate.down = False
    first = run.run("post-dataset", REF, attempt=13, owner="chain-a")
    second = run.run("post-dataset", REF, attempt=10, owner="chain-a")
    assert isinstance(first, Done) and not first.skipped
    assert isinstance(second, Done) and second.skipped


def test_deaths_still_reach_the_cap(ledger: StepLedger) -> None:
    """Executions left open (their process died) beside waits that ended: only the deaths
    count, and the cap's deaths fail the file as WorkerLost."""
    gate = Gate()
    run = executor(ledger, gate)
    for step in STEPS[:3]:
        run.run(step, REF, attempt=0, owner="chain-a")
    gate.down = True
    for attempt in range(MAX_REDELIVERIES):
        ledger.begin_step("k1", "post-dataset", "chain-a")  # a process that died running it
        assert isinstance(run.run("post-dataset", REF, attempt=attempt, owner="chain-a"), Retry)
    ledger.begin_step("k1", "post-dataset", "chain-a")  # one death more than the cap
    outcome = run.run("post-dataset", REF, attempt=9, owner="chain-a")
    assert isinstance(outcome, Failed)
    assert "worker died 3 times" in outcome.error.message
    failure = failed(ledger)
    assert failure is not None and failure["error_class"] == "WorkerLost"


def test_an_open_execution_is_a_death_only_once_its_process_is_gone(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another copy running now (its process beats) is no death; a process gone is one, once."""
    as_process(monkeypatch, "host:1", store)
    store.begin_step("k1", "extract", "chain-a")  # running in host:1
    as_process(monkeypatch, "host:2", store)
    second = store.begin_step("k1", "extract", "chain-a")  # a copy beside it, host:1 alive
    assert (second.runs, second.deaths) == (2, 0)
    store.redis.delete(f"{heartbeats.PROC_PREFIX}host:1")  # host:1 is SIGKILLed
    as_process(monkeypatch, "host:3", store)
    third = store.begin_step("k1", "extract", "chain-a")
    assert (third.runs, third.deaths) == (3, 1)
    store.end_step("k1", "extract", second.run_id, message_follows=False)
    store.end_step("k1", "extract", third.run_id, message_follows=False)
    store.redis.delete(f"{heartbeats.PROC_PREFIX}host:2", f"{heartbeats.PROC_PREFIX}host:3")
    assert store.begin_step("k1", "extract", "chain-a").deaths == 1  # ended ones never count


def test_a_forgiven_execution_is_no_death(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bounded stop abandons host:1's execution on purpose: uncounted, and no death after."""
    as_process(monkeypatch, "host:1", store)
    store.begin_step("k1", "build-dataset", "chain-a")
    store.forgive_run("k1", "build-dataset", "host:1")
    store.redis.delete(f"{heartbeats.PROC_PREFIX}host:1")
    as_process(monkeypatch, "host:2", store)
    again = store.begin_step("k1", "build-dataset", "chain-a")
    assert (again.runs, again.deaths) == (1, 0)


def test_a_count_from_before_deaths_is_dropped(store: JobStore) -> None:
    """A release before counted every execution in a plain key: that count is no death count."""
    store.redis.set("oi:runs:k1:extract", 9)
    start = store.begin_step("k1", "extract", "chain-a")
    assert (start.runs, start.deaths) == (1, 0)


def test_a_message_that_follows_stamps_an_existing_record_only(store: JobStore) -> None:
    """A retry is published after the record changed (the reconciler's grace covers its
    moment in transit); a record that is gone is not made again as a stub."""
    store.redis.hset("oi:job:k1", mapping={"state": "running", "updated_at": "2020-01-01T00:00:00.000Z"})
    start = store.begin_step("k1", "post-dataset", "chain-a")
    store.end_step("k1", "post-dataset", start.run_id, message_follows=True)
    assert str(store.redis.hget("oi:job:k1", "updated_at")) > "2026"
    gone = store.begin_step("k2", "post-dataset", "chain-a")  # marks a record running ...
    store.redis.delete("oi:job:k2")  # ... which expires (or is removed) while the step runs
    store.end_step("k2", "post-dataset", gone.run_id, message_follows=True)
    assert not store.redis.exists("oi:job:k2")

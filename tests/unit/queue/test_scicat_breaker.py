"""SciCat's circuit breaker (queue/scicat_breaker.py) and the executor's uncounted waits (fakeredis).

The real outage (SciCat stopped, answering 503, flapping, under real workers) is in
tests/reliability/test_scicat_outage.py; here each rule is pinned with a fake clock and a
probe that answers as told.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from structlog.testing import capture_logs

from offline_ingestor.config import parse_config
from offline_ingestor.errors import ScicatUnavailable
from offline_ingestor.ingest.executor import Done, Failed, Retry, StepExecutor
from offline_ingestor.ingest.job import Job
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_OUTPUT, STEPS
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.queue.scicat_breaker import ScicatBreaker
from offline_ingestor.scicat import ScicatClient

REF: Job = {"key": "k1", "file": "/data/run1.hdf"}
POLICY = RetryPolicy(max_retries=2, backoff_s=1.0, backoff_max_s=8.0)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Health:
    """SciCat's health endpoint as the test sets it; counts the probes."""

    def __init__(self) -> None:
        self.up = True
        self.probes = 0

    def __call__(self) -> object:
        self.probes += 1
        if not self.up:
            raise ScicatUnavailable("SciCat GET /health: connection failed (ConnectionRefusedError)")
        return {}


@pytest.fixture
def client() -> Iterator[fakeredis.FakeRedis]:
    redis = fakeredis.FakeRedis(decode_responses=True)
    yield redis
    redis.flushall()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(client: Any, clock: Clock) -> ScicatBreaker:
    return ScicatBreaker(client, probe_s=1.0, probe_max_s=8.0, clock=clock)


def test_an_outage_opens_once_and_closes_once_for_every_worker(client: Any, clock: Clock) -> None:
    """Two workers meet the outage: one ``scicat.down`` line; the probe finding it back logs ``scicat.up``."""
    one, two, health = breaker(client, clock), breaker(client, clock), Health()
    health.up = False
    with capture_logs() as logs:
        assert one.outage_wait_s(health, "refused") == 1.0
        assert two.outage_wait_s(health, "refused") is not None
        clock.now += 30
        health.up = True
        assert two.wait_s(health) == 0.0
        assert one.wait_s(health) == 0.0
    events = [entry["event"] for entry in logs if entry["event"].startswith("scicat.")]
    assert events.count("scicat.down") == 1 and events.count("scicat.up") == 1
    assert next(entry for entry in logs if entry["event"] == "scicat.up")["down_s"] == 30.0
    assert one.outage() is None


def test_the_probe_backs_off_to_its_cap(client: Any, clock: Clock) -> None:
    """While SciCat stays down, probes come after 2, 4, 8, 8 … s: never more often, never beyond the cap."""
    gate, health = breaker(client, clock), Health()
    health.up = False
    gate.outage_wait_s(health, "refused")
    waits = []
    for _ in range(5):
        wait = gate.wait_s(health)
        waits.append(wait)
        clock.now += wait
    # The first call is due at once (the opening's 1 s has not passed: it waits that first)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert health.probes == 1 + 4  # the opening probe, then one per due probe


def test_not_due_means_no_probe(client: Any, clock: Clock) -> None:
    """Many waiting steps ask the breaker; only a due one probes SciCat (one request, not one per file)."""
    gate, health = breaker(client, clock), Health()
    health.up = False
    gate.outage_wait_s(health, "refused")
    for _ in range(50):
        assert gate.wait_s(health) > 0
    assert health.probes == 1


def test_a_failure_with_scicat_up_is_the_files_own(client: Any, clock: Clock) -> None:
    """A timeout on one request while /health answers opens nothing: the file's retry is counted."""
    gate, health = breaker(client, clock), Health()
    assert gate.outage_wait_s(health, "timed out") is None
    assert gate.outage() is None


def test_waiting_files_are_counted(client: Any, clock: Clock) -> None:
    """``outage()`` says since when SciCat is down and how many files wait for it."""
    gate, health = breaker(client, clock), Health()
    health.up = False
    gate.outage_wait_s(health, "SciCat GET /health answered 503")
    for key in ("a", "b", "a"):
        gate.note_waiting(key)
    outage = gate.outage()
    assert outage is not None
    assert (outage.since, outage.waiting) == (clock.now, 2)
    assert "503" in outage.reason


class Steps:
    """Step functions that fail as told and count their calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.errors: dict[str, list[BaseException]] = {}

    def mapping(self) -> dict[str, Any]:
        def make(step: str) -> Any:
            def run(rt: Runtime, job: Job) -> Job:
                self.calls.append(step)
                if self.errors.get(step):
                    raise self.errors[step].pop(0)
                return {**job, STEP_OUTPUT[step]: f"{step}-result"}  # type: ignore[typeddict-item]

            return run

        return {step: make(step) for step in STEPS}


class Probing(StepExecutor):
    """The executor with its health probe replaced by the test's."""

    health: Health

    def _probe(self) -> object:
        return self.health()


def executor(client: Any, clock: Clock, steps: Steps, health: Health) -> Probing:
    config = parse_config({})
    rt = Runtime(config=config, schemas=None, scicat=ScicatClient(config.scicat))  # type: ignore[arg-type]
    store = JobStore(client, state_ttl_s=3600, lease_ttl_s=600)
    run = Probing(
        rt, store, POLICY, max_redeliveries=2, functions=steps.mapping(), gate=breaker(client, clock)
    )
    run.health = health
    return run


def refused() -> ScicatUnavailable:
    return ScicatUnavailable("SciCat GET /proposals/1: connection failed (ConnectionRefusedError)")


def test_an_outage_spends_no_retry(client: Any, clock: Clock) -> None:
    """Twenty failed attempts while SciCat is down, then one more failure with it up: still retried."""
    steps, health = Steps(), Health()
    run = executor(client, clock, steps, health)
    run.run("select-schema", REF, attempt=0, owner="chain")
    health.up = False
    steps.errors["extract"] = [refused() for _ in range(20)]
    attempt = 0
    for _ in range(20):
        outcome = run.run("extract", REF, attempt=attempt, owner="chain")
        assert isinstance(outcome, Retry), outcome
        assert outcome.delay_s <= POLICY.backoff_max_s
        attempt += 1
        clock.now += outcome.delay_s
    # SciCat is back; the file's own failures now count from 0: two retries, then failed
    health.up = True
    clock.now += 60
    steps.errors["extract"] = [ScicatUnavailable("answered 500", status=500) for _ in range(3)]
    outcomes = []
    for _ in range(3):
        outcomes.append(run.run("extract", REF, attempt=attempt, owner="chain"))
        attempt += 1
    assert [type(outcome) for outcome in outcomes] == [Retry, Retry, Failed]


def test_write_steps_do_not_run_while_scicat_is_down(client: Any, clock: Clock) -> None:
    """post-dataset is not even started while the breaker is open; it runs once SciCat answers."""
    steps, health = Steps(), Health()
    run = executor(client, clock, steps, health)
    for step in STEPS[:3]:
        assert isinstance(run.run(step, REF, attempt=0, owner="chain"), Done)
    health.up = False
    assert run.gate.outage_wait_s(health, "refused") is not None
    outcome = run.run("post-dataset", REF, attempt=0, owner="chain")
    assert isinstance(outcome, Retry) and "post-dataset" not in steps.calls
    health.up = True
    clock.now += 60
    assert isinstance(run.run("post-dataset", REF, attempt=1, owner="chain"), Done)
    assert steps.calls.count("post-dataset") == 1


def test_a_write_lost_in_the_outage_keeps_its_window(client: Any, clock: Clock) -> None:
    """A POST that got no answer as SciCat went down waits out its in-flight window before any retry."""
    steps, health = Steps(), Health()
    run = executor(client, clock, steps, health)
    for step in STEPS[:3]:
        run.run(step, REF, attempt=0, owner="chain")

    def post(rt: Runtime, job: Job) -> Job:
        from offline_ingestor.current import announce_write

        announce_write()
        health.up = False
        raise ScicatUnavailable("SciCat POST /datasets timed out")

    run.functions = {**run.functions, "post-dataset": post}
    outcome = run.run("post-dataset", REF, attempt=0, owner="chain")
    assert isinstance(outcome, Retry)
    # The window: scicat.timeout + the margin, measured from the real send time
    assert outcome.delay_s >= run.rt.config.scicat.timeout


def test_metrics_gauges_follow_the_breaker(client: Any, clock: Clock) -> None:
    """The scrape's SciCat gauges: up 1 / outage 0 while up; 0 / its length / files waiting while down."""
    from offline_ingestor.worker.metrics_server import _scicat_gauges

    def values(outage: Any) -> dict[str, float]:
        return {family.name: family.samples[0].value for family in _scicat_gauges(outage, clock.now)}

    gate, health = breaker(client, clock), Health()
    assert values(gate.outage()) == {
        "offline_ingestor_scicat_up": 1,
        "offline_ingestor_scicat_outage_seconds": 0.0,
        "offline_ingestor_scicat_waiting_files": 0,
    }
    health.up = False
    gate.outage_wait_s(health, "refused")
    gate.note_waiting("a")
    clock.now += 90
    assert values(gate.outage()) == {
        "offline_ingestor_scicat_up": 0,
        "offline_ingestor_scicat_outage_seconds": 90.0,
        "offline_ingestor_scicat_waiting_files": 0,  # "a" last asked 90 s ago: not waiting any more
    }
    gate.note_waiting("a")
    outage = gate.outage()
    assert outage is not None and values(outage)["offline_ingestor_scicat_waiting_files"] == 1
    assert outage.describe(clock.now).startswith("waiting for SciCat since ")
    assert "(1m 30s, 1 files waiting): refused" in outage.describe(clock.now)

"""A file that failed at post-job is requeued at post-job: its earlier steps are skipped as done."""

from __future__ import annotations

from typing import Any

import fakeredis

from offline_ingestor.config import parse_config
from offline_ingestor.errors import ScicatRejected
from offline_ingestor.ingest.executor import Done, Failed, StepExecutor
from offline_ingestor.ingest.job import Job
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_OUTPUT, STEPS
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.scicat import ScicatClient

REF: Job = {"key": "k1", "file": "/data/run1.hdf"}


def _executor(store: JobStore, calls: list[str], refuse: set[str]) -> StepExecutor:
    def function(step: str) -> Any:
        def run(rt: Runtime, job: Job) -> Job:
            calls.append(step)
            if step in refuse:
                raise ScicatRejected("SciCat answered 400: Invalid job type: x", status=400)
            return {**job, STEP_OUTPUT[step]: f"{step}-result"}  # type: ignore[typeddict-item]

        return run

    config = parse_config({})
    rt = Runtime(config=config, schemas=None, scicat=ScicatClient(config.scicat))  # type: ignore[arg-type]
    policy = RetryPolicy(max_retries=0, backoff_s=0.0, backoff_max_s=0.0)
    return StepExecutor(rt, store, policy, max_redeliveries=2, functions={s: function(s) for s in STEPS})


def _chain(executor: StepExecutor, owner: str) -> Any:
    for step in STEPS:
        outcome = executor.run(step, REF, attempt=0, owner=owner)
        if not isinstance(outcome, Done):
            return outcome
    return outcome


def test_requeue_after_a_post_job_failure_runs_only_post_job() -> None:
    """The forced claim of a post-job requeue keeps step:*=done; the new chain runs post-job alone."""
    store = JobStore(fakeredis.FakeRedis(decode_responses=True))
    calls: list[str] = []
    assert store.claim_for_queue(REF)[0]
    assert isinstance(_chain(_executor(store, calls, {"post-job"}), "chain-1"), Failed)
    assert calls == list(STEPS) and store.failure("k1")["step"] == "post-job"  # type: ignore[index]
    # requeue (cli/queue.py) of a post-job failure
    assert store.claim_for_queue({**REF, "keep_done_steps": True}, force=True)[0]
    calls.clear()
    assert isinstance(_chain(_executor(store, calls, set()), "chain-2"), Done)
    assert calls == ["post-job"]
    record = store.get("k1")
    assert record is not None and record.state == "done" and store.failure("k1") is None


def test_a_forced_enqueue_still_redoes_every_step() -> None:
    """Without the flag (enqueue --force, other failures) the claim forgets the done steps."""
    store = JobStore(fakeredis.FakeRedis(decode_responses=True))
    calls: list[str] = []
    assert store.claim_for_queue(REF)[0]
    _chain(_executor(store, calls, set()), "chain-1")
    assert store.claim_for_queue(REF, force=True)[0]
    calls.clear()
    _chain(_executor(store, calls, set()), "chain-2")
    assert calls == list(STEPS)

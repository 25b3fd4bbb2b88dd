"""The Celery glue (worker/tasks.py) never acks a step whose successor was not published."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from offline_ingestor.config import parse_config
from offline_ingestor.ingest.executor import StepExecutor
from offline_ingestor.ingest.job import Job
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEP_OUTPUT, STEPS
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.scicat import ScicatClient
from offline_ingestor.worker import tasks

REF: Job = {"key": "k1", "file": "/data/run1.hdf"}


def message(retries: int = 0) -> Any:
    """What ``_run`` reads of a Celery task: its request (one chain, one message id)."""
    return SimpleNamespace(
        request=SimpleNamespace(root_id="chain-a", id="m1", retries=retries, chain=None, callbacks=None)
    )


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Steps that record their calls, over a fakeredis job store, in place of the worker's."""
    made: list[str] = []

    def function(step: str) -> Any:
        def run(rt: Runtime, job: Job) -> Job:
            made.append(step)
            return {**job, STEP_OUTPUT[step]: f"{step}-result"}  # type: ignore[typeddict-item]

        return run

    config = parse_config({})
    rt = Runtime(config=config, schemas=None, scicat=ScicatClient(config.scicat))  # type: ignore[arg-type]
    store = JobStore(fakeredis.FakeRedis(decode_responses=True))
    executor = StepExecutor(
        rt,
        store,
        RetryPolicy(max_retries=2, backoff_s=1.0, backoff_max_s=8.0),
        max_redeliveries=2,
        functions={step: function(step) for step in STEPS},
    )
    monkeypatch.setattr(tasks, "_executor", lambda: executor)
    return made


def test_a_step_whose_next_message_redis_refused_is_put_back(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis full while publishing the next step: requeue; the redelivery skips and publishes."""
    published: list[str] = []

    def full(task: Any, step: str, ref: Job) -> None:
        try:
            raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
        except redis.RedisError as exc:
            raise OperationalError(str(exc)) from exc  # how kombu reports it

    # Given the step runs, but Redis refuses the message of the next one
    monkeypatch.setattr(tasks, "_send_next", full)
    # When the task ends
    with pytest.raises(Reject) as rejected:
        tasks._run(message(), "select-schema", REF)
    # Then its message goes back to the queue instead of being acked
    assert rejected.value.requeue is True and calls == ["select-schema"]
    # And its next delivery, with Redis back, does not run the step again but publishes
    monkeypatch.setattr(tasks, "_send_next", lambda task, step, ref: published.append(step))
    assert tasks._run(message(), "select-schema", REF) == REF
    assert calls == ["select-schema"] and published == ["select-schema"]


def test_other_publish_errors_are_not_hidden(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while publishing is not taken for a Redis outage (it would loop forever)."""

    def broken(task: Any, step: str, ref: Job) -> None:
        raise TypeError("not JSON serializable")

    monkeypatch.setattr(tasks, "_send_next", broken)
    with pytest.raises(TypeError):
        tasks._run(message(), "select-schema", REF)


def test_a_message_of_the_five_step_version_continues_into_post_job(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post-origdatablock message published by a five-step worker ends in post-job, then done."""
    store: JobStore = tasks._executor().ledger  # type: ignore[assignment]
    published: list[str] = []

    class Signature:
        def __init__(self, step: str) -> None:
            self.step = step

        def apply_async(self) -> None:
            published.append(self.step)

    monkeypatch.setattr(tasks, "step_signature", lambda app, step, ref, config: Signature(step))
    monkeypatch.setattr(tasks, "_config", lambda: parse_config({}))
    # Given a file the five-step version took through post-dataset (record and document saved)
    for step in STEPS[:4]:
        assert tasks._run(message(), step, REF) == REF
    assert published == list(STEPS[1:5])
    # When the old version's post-origdatablock message is run by this one
    tasks._run(message(), "post-origdatablock", REF)
    # Then it publishes post-job, whose run finishes the file
    assert published[-1] == "post-job"
    record = store.get("k1")
    assert record is not None and record.state != "done"
    tasks._run(message(), "post-job", REF)
    record = store.get("k1")
    assert record is not None and record.state == "done" and calls[-1] == "post-job"

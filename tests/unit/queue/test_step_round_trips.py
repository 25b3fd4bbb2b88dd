"""The rules that ride on a step's two ledger round trips (issue 26 target 3; fakeredis).

``begin_step`` writes this process's heartbeat ahead of the lease script and marks the record
running inside it; ``finish_step`` drops the step from the heartbeat after marking it done, and
the task's end writes only what Redis does not hold yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from offline_ingestor.ingest.job import Job
from offline_ingestor.queue import heartbeats, job_store
from offline_ingestor.queue.heartbeats import ProcessHeartbeat
from offline_ingestor.queue.job_store import UNFINISHED_KEY, JobStore

JOB: Job = {"key": "k1", "file": "/data/run1.hdf", "job_id": None, "message_file": None}


@pytest.fixture
def store() -> Iterator[JobStore]:
    yield JobStore(fakeredis.FakeRedis(decode_responses=True))
    heartbeats._BEATING.clear()


@pytest.fixture
def beating(store: JobStore) -> ProcessHeartbeat:
    """This process keeps a heartbeat (as a pool process does; no renewing thread here)."""
    heartbeat = ProcessHeartbeat(lambda: store.redis, interval_s=5, ttl_s=30)
    heartbeats._BEATING[os.getpid()] = heartbeat
    return heartbeat


def running_in_redis(store: JobStore, heartbeat: ProcessHeartbeat) -> list[list[str]]:
    raw = store.redis.get(heartbeat.name)
    return list(json.loads(raw)["keys"]) if raw else []


def commands(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record each pipeline's commands (name and first key) in the order Redis runs them."""
    seen: list[list[str]] = []
    original = store.redis.pipeline

    def spying(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        execute = pipe.execute

        def run(*a: Any, **k: Any) -> Any:
            seen.append([_named(args) for args, _ in pipe.command_stack])
            return execute(*a, **k)

        pipe.execute = run
        return pipe

    monkeypatch.setattr(store.redis, "pipeline", spying)
    return seen


def _named(args: tuple[Any, ...]) -> str:
    """``NAME first-key`` of a queued command (a script's first key is after its key count)."""
    return f"{args[0]} {args[3] if args[0] == 'EVAL' else args[1]}"


# -- heartbeat before lease ---------------------------------------------------------------------


def test_the_lease_script_already_sees_the_heartbeat_name_the_step(
    store: JobStore, beating: ProcessHeartbeat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment the lease names this process its holder, its heartbeat says it runs the
    step: the reconciler never sees a leased running file without a live holder running it."""
    # The script notes what the holder's heartbeat holds when it runs (ARGV[4] .. ARGV[2]).
    spy = "redis.call('SET', 'seen-by-lease', redis.call('GET', ARGV[4] .. ARGV[2]) or 'none')\n"
    monkeypatch.setattr(job_store, "_TAKE_LEASE", spy + job_store._TAKE_LEASE)
    with beating.running("k1", "extract"):
        assert store.redis.get(beating.name) is None  # nothing written before begin_step ...
        assert store.begin_step("k1", "extract", "chain-a").leased  # ... which writes it first
        seen = store.redis.get("seen-by-lease")
        assert seen != "none" and ["k1", "extract"] in json.loads(seen)["keys"]
        assert store.redis.get("oi:holder:k1") == beating.ident


def test_begin_step_is_one_round_trip_with_the_beat_first(
    store: JobStore, beating: ProcessHeartbeat, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = commands(store, monkeypatch)
    with beating.running("k1", "extract"):
        store.begin_step("k1", "extract", "chain-a")
    assert len(seen) == 1 and seen[0][0] == f"SET {beating.name}"
    assert seen[0].index(f"SET {beating.name}") < seen[0].index("EVAL oi:lease:k1")


# -- the running mark ---------------------------------------------------------------------------


def test_begin_step_marks_the_record_running_with_the_lease(store: JobStore) -> None:
    store.claim_for_queue(JOB)
    start = store.begin_step("k1", "extract", "chain-a", attempt=2)
    fields = store.get("k1").fields  # type: ignore[union-attr]
    assert start.leased
    assert [fields[name] for name in ("state", "step", "attempts")] == ["running", "extract", "3"]
    assert store.redis.sismember(UNFINISHED_KEY, "k1")
    assert 0 < store.redis.ttl("oi:job:k1") <= store.state_ttl_s


def test_a_refused_chain_leaves_the_record_alone(store: JobStore) -> None:
    store.claim_for_queue(JOB)
    store.begin_step("k1", "select-schema", "chain-a")
    assert not store.begin_step("k1", "post-job", "chain-b", attempt=4).leased
    fields = store.get("k1").fields  # type: ignore[union-attr]
    assert (fields["step"], fields["attempts"]) == ("select-schema", "1")


def test_a_done_step_or_file_is_never_marked_running_again(store: JobStore) -> None:
    """A late copy of a step (the file, or the step, done) skips it: the record keeps saying so."""
    store.claim_for_queue(JOB)
    store.begin_step("k1", "extract", "chain-a")
    store.finish_step({**JOB}, "extract")
    store.begin_step("k1", "extract", "chain-a", attempt=1)  # a late copy of the done step
    assert store.get("k1").fields["attempts"] == "1"  # type: ignore[union-attr]
    store.finish_step({**JOB}, "post-job", state="done", release="chain-a")
    for step in ("extract", "post-job"):
        start = store.begin_step("k1", step, "chain-a")
        assert start.leased and start.record is not None and start.record.state == "done"
    assert not store.redis.sismember(UNFINISHED_KEY, "k1")


# -- the end of a step --------------------------------------------------------------------------


def test_finish_drops_the_step_from_the_heartbeat_after_marking_it_done(
    store: JobStore, beating: ProcessHeartbeat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the message that finds the heartbeat without the step finds the step done; the
    task's end then writes nothing more (one round trip per step end, not two)."""
    seen = commands(store, monkeypatch)
    with beating.running("k1", "extract"):
        store.begin_step("k1", "extract", "chain-a")
        store.finish_step({**JOB}, "extract")
        assert running_in_redis(store, beating) == []
    assert len(seen) == 2
    finish = seen[1]
    assert finish.index("HSET oi:job:k1") < finish.index(f"SET {beating.name}")
    sets: list[str] = []
    monkeypatch.setattr(store.redis, "set", lambda *a, **k: sets.append(str(a[0])))
    with beating.running("k1", "build-dataset"):
        store.begin_step("k1", "build-dataset", "chain-a")
        store.finish_step({**JOB}, "build-dataset")
    assert sets == []  # the task's end: Redis holds the value already


def test_a_step_that_did_not_finish_is_dropped_from_the_heartbeat_at_the_tasks_end(
    store: JobStore, beating: ProcessHeartbeat
) -> None:
    """A retry, a refusal or an error ends the task without finish_step: its end writes the beat,
    so a retried or requeued copy is not refused as a copy of a running step."""
    with beating.running("k1", "post-dataset"):
        store.begin_step("k1", "post-dataset", "chain-a")
        assert running_in_redis(store, beating) == [["k1", "post-dataset"]]
    assert running_in_redis(store, beating) == []


def test_the_last_step_releases_the_lease_in_its_finish(store: JobStore) -> None:
    store.claim_for_queue(JOB)
    store.begin_step("k1", "post-job", "chain-a")
    store.finish_step({**JOB}, "post-job", state="done", release="chain-b")  # not the holder
    assert store.redis.get("oi:lease:k1") == "chain-a"
    store.finish_step({**JOB}, "post-job", state="done", release="chain-a")
    assert store.redis.get("oi:lease:k1") is None and store.redis.get("oi:holder:k1") is None
    assert store.get("k1").state == "done"  # type: ignore[union-attr]

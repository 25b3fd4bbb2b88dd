"""The index of unfinished keys (``oi:unfinished``): kept where a record's state changes, so that
the reconciler's pass reads the queued and running records only (fakeredis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from offline_ingestor.ingest.job import Job
from offline_ingestor.queue.job_store import UNFINISHED_KEY, JobStore


def job(key: str) -> Job:
    return {"key": key, "file": f"/data/{key}.hdf", "job_id": None, "message_file": None}


@pytest.fixture
def store() -> Iterator[JobStore]:
    yield JobStore(fakeredis.FakeRedis(decode_responses=True))


def indexed(store: JobStore) -> set[str]:
    return {str(key) for key in store.redis.smembers(UNFINISHED_KEY)}


def test_each_state_change_keeps_the_index(store: JobStore) -> None:
    for key in ("a", "b", "c", "d", "e"):
        assert store.claim_for_queue(job(key), claim=f"r-{key}")[0]
    assert indexed(store) == {"a", "b", "c", "d", "e"}
    store.begin_step("a", "select-schema", "chain-a")  # marks it running
    store.finish_step(job("a"), "select-schema")  # not the last step: still unfinished
    store.finish_step(job("b"), "post-origdatablock", state="done")
    store.fail_step("c", "extract", "chain", {"file": "/data/c.hdf", "message": "bad"})
    assert store.release_claim("d", "r-d")
    store.unclaim("e")
    assert indexed(store) == {"a"}
    store.update("b", state="running")  # a forced re-run of a done file
    store.record_refusal("/data/f.hdf", "job-f", "refused", "InputFileError")
    assert indexed(store) == {"a", "b"}
    assert store.claim_for_queue(job("c"))[0]  # requeue of a failed file
    assert indexed(store) == {"a", "b", "c"}


def test_a_pass_reads_only_the_unfinished_records(store: JobStore, monkeypatch: Any) -> None:
    for index in range(50):
        store.claim_for_queue(job(f"k{index}"))
        if index >= 2:
            store.finish_step(job(f"k{index}"), "post-origdatablock", state="done")
    read: list[str] = []
    original = store.redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        hgetall = pipe.hgetall

        def spy(name: str) -> Any:
            read.append(name)
            return hgetall(name)

        pipe.hgetall = spy
        return pipe

    monkeypatch.setattr(store.redis, "pipeline", counting_pipeline)
    monkeypatch.setattr(store.redis, "scan_iter", lambda *a, **k: pytest.fail("a pass must not scan"))
    assert sorted(record.key for record in store.unfinished()) == ["k0", "k1"]
    assert sorted(read) == ["oi:job:k0", "oi:job:k1"]


def test_members_whose_record_expired_or_finished_elsewhere_are_dropped(store: JobStore) -> None:
    store.claim_for_queue(job("gone"))
    store.claim_for_queue(job("done-by-hand"))
    store.claim_for_queue(job("live"))
    store.redis.delete("oi:job:gone")  # its TTL ran out
    store.redis.hset("oi:job:done-by-hand", "state", "done")  # an older release finished it
    assert [record.key for record in store.unfinished()] == ["live"]
    assert indexed(store) == {"live"}


def test_the_backfill_indexes_records_written_before_the_index(store: JobStore) -> None:
    for key, state in (("q", "queued"), ("r", "running"), ("d", "done"), ("f", "failed")):
        store.redis.hset(f"oi:job:{key}", mapping={"state": state, "file": f"/data/{key}.hdf"})
    assert indexed(store) == set()
    assert store.index_unfinished() == 2
    assert sorted(record.key for record in store.unfinished()) == ["q", "r"]


def test_a_claim_between_the_read_and_the_prune_keeps_its_member(store: JobStore) -> None:
    store.claim_for_queue(job("a"))
    store.claim_for_queue(job("x"))
    store.redis.hset("oi:job:x", "state", "done")  # read as finished by the pass ...
    records = store.unfinished()
    assert next(records).key == "a"  # the batch is read; the prune comes after it
    assert store.claim_for_queue(job("x"), force=True)[0]  # ... and enqueued again meanwhile
    assert list(records) == []
    assert indexed(store) == {"a", "x"}


def test_the_reconciler_counts_records_from_before_the_index(store: JobStore, monkeypatch: Any) -> None:
    """A worker upgraded while files were queued: its reconciler's first pass indexes them, so
    they are counted (stuck gauge) and watched, though no state change has added them yet; its
    later passes read the index only, never every record."""
    from offline_ingestor.config import parse_config
    from offline_ingestor.worker.reconciler import SUMMARY_KEY, Reconciler

    config = parse_config({"queue": {"stuck_after_s": 60, "heartbeat_ttl_s": 1, "heartbeat_interval_s": 0.5}})
    old = "2020-01-01T00:00:00.000Z"
    store.redis.hset(
        "oi:job:q", mapping={"state": "queued", "file": "/d/q.hdf", "enqueued_at": old, "updated_at": old}
    )
    reconciler = Reconciler(None, config, lambda: store, lambda: 60.0)  # type: ignore[arg-type]
    assert reconciler.run_once() == {"restored": 0, "resumed": 0, "suspects": 1}
    assert store.redis.hget(SUMMARY_KEY, "stuck") == "1"
    assert indexed(store) == {"q"}
    scan = store.redis.scan_iter

    def no_record_scan(match: str = "*", **kwargs: Any) -> Any:
        assert not match.startswith("oi:job:"), "a pass after the first scanned every record"
        return scan(match, **kwargs)

    monkeypatch.setattr(store.redis, "scan_iter", no_record_scan)
    store.finish_step(job("q"), "post-origdatablock", state="done")
    assert reconciler.run_once() == {"restored": 0, "resumed": 0, "suspects": 0}
    assert store.redis.hget(SUMMARY_KEY, "stuck") == "0"

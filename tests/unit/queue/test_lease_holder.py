"""The lease's holder rules (``job_store._TAKE_LEASE``) and the forced claim's takeover (fakeredis)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import fakeredis
import pytest

from offline_ingestor.queue import heartbeats
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.worker.reconciler import message_key

JOB = {"key": "k1", "file": "/data/run1.hdf", "job_id": None, "message_file": None}


@pytest.fixture
def store() -> Iterator[JobStore]:
    yield JobStore(fakeredis.FakeRedis(decode_responses=True))
    heartbeats._BEATING.clear()


def as_process(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """This test process beats (in the leases' eyes) as ``name``."""
    monkeypatch.setattr(heartbeats, "beating_as", lambda: name)


def beat(store: JobStore, name: str, *running: tuple[str, str]) -> None:
    value = json.dumps({"keys": [list(pair) for pair in running], "tags": []})
    store.redis.set(f"oi:proc:{name}", value, px=30_000)


def test_another_chain_waits_while_the_holder_lives_and_takes_over_once_it_died(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_process(monkeypatch, "h:1")
    beat(store, "h:1", ("k1", "extract"))
    assert store.begin_step("k1", "extract", "chain-a").leased
    as_process(monkeypatch, "h:2")
    assert not store.begin_step("k1", "select-schema", "chain-b").leased  # holder alive
    store.redis.delete("oi:proc:h:1")  # its heartbeat expired
    assert store.begin_step("k1", "select-schema", "chain-b").leased
    assert store.redis.get("oi:lease:k1") == "chain-b" and store.redis.get("oi:holder:k1") == "h:2"


def test_the_same_chain_may_not_run_a_step_its_live_holder_is_running(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_process(monkeypatch, "h:1")
    beat(store, "h:1", ("k1", "post-dataset"))
    assert store.begin_step("k1", "post-dataset", "chain-a").leased
    as_process(monkeypatch, "h:2")
    # A restored copy of the running message: refused while h:1 runs that very step ...
    assert not store.begin_step("k1", "post-dataset", "chain-a").leased
    # ... but the chain's next step (published from inside the step) may begin elsewhere.
    assert store.begin_step("k1", "post-origdatablock", "chain-a").leased


def test_a_lease_of_a_process_without_heartbeat_is_never_taken_over(store: JobStore) -> None:
    assert store.begin_step("k1", "extract", "chain-a").leased  # ingest-now, tools: no heartbeat
    assert not store.begin_step("k1", "select-schema", "chain-b").leased


def test_forced_claim_takes_over_only_a_dead_holders_lease_and_keeps_write_notes(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_process(monkeypatch, "h:1")
    beat(store, "h:1", ("k1", "post-dataset"))
    store.claim_for_queue(JOB)  # type: ignore[arg-type]
    store.begin_step("k1", "post-dataset", "chain-a")
    store.note_write("k1", "post-dataset", 1.0, writer="msg-a", window_s=10.0)
    claimed, previous = store.claim_for_queue(JOB, force=True)  # type: ignore[arg-type]
    assert (claimed, previous) == (False, "running (held by h:1)")
    store.redis.delete("oi:proc:h:1")
    assert store.claim_for_queue(JOB, force=True)[0]  # type: ignore[arg-type]
    assert store.redis.get("oi:lease:k1") is None
    record = store.get("k1")
    assert record is not None and record.state == "queued"
    assert record.fields["writer:post-dataset"] == "msg-a"  # the orphaned-write rules still see it


def test_message_key_reads_plain_and_base64_bodies() -> None:
    import base64

    body = json.dumps([[{"key": "k9", "file": "/f"}], {}, {}])
    assert message_key({"body": body, "properties": {}}) == "k9"
    encoded = base64.b64encode(body.encode()).decode()
    assert message_key({"body": encoded, "properties": {"body_encoding": "base64"}}) == "k9"
    assert message_key({"body": "not json", "properties": {}}) is None

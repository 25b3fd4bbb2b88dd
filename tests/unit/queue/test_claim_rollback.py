"""``JobStore.release_claim``: undoing a claim whose chain was never published (issue 28, item 6).

The script removes a record and its document only while the record is still the claim's own:
a producer that forced a newer claim meanwhile keeps its record.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from offline_ingestor.ingest.job import Job
from offline_ingestor.queue.job_store import FAILED_KEY, JobStore


@pytest.fixture
def store() -> Iterator[JobStore]:
    client = fakeredis.FakeRedis(decode_responses=True)
    yield JobStore(client, state_ttl_s=3600, lease_ttl_s=600)
    client.flushall()


def job(key: str = "k1") -> Job:
    return {"key": key, "file": "/data/run1.hdf", "job_id": None, "message_file": None}


def test_own_claim_is_rolled_back_with_its_document(store: JobStore) -> None:
    """Record and document go: the file is as if never enqueued, and can be claimed again."""
    assert store.claim_for_queue(job(), claim="c1") == (True, "")
    store.save_doc(job())
    assert store.release_claim("k1", "c1") is True
    assert store.get("k1") is None and not store.redis.exists("oi:doc:k1")
    assert store.claim_for_queue(job(), claim="c2") == (True, "")


def test_a_newer_claim_is_left_alone(store: JobStore) -> None:
    """Another producer's forced claim of the same key is not undone by the first one's roll-back."""
    store.claim_for_queue(job(), claim="c1")
    assert store.claim_for_queue(job(), force=True, claim="c2") == (True, "queued")
    store.save_doc(job())
    assert store.release_claim("k1", "c1") is False
    record = store.get("k1")
    assert record is not None and (record.state, record.fields["claim"]) == ("queued", "c2")
    assert store.redis.exists("oi:doc:k1")


def test_a_record_claimed_without_a_request_id_is_left_alone(store: JobStore) -> None:
    """A record with no claim id (an older producer's) is never taken for this claim's."""
    store.claim_for_queue(job(), claim="")
    assert store.release_claim("k1", "c1") is False
    record = store.get("k1")
    assert record is not None and record.state == "queued"


def test_nothing_to_roll_back(store: JobStore) -> None:
    """No record: nothing removed, nothing created, other keys untouched."""
    store.claim_for_queue(job("other"), claim="c1")
    store.redis.hset(FAILED_KEY, "k1", "{}")
    assert store.release_claim("k1", "c1") is False
    assert store.get("k1") is None and store.get("other") is not None
    assert store.redis.hexists(FAILED_KEY, "k1")

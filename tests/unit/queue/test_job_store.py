"""Job records in Redis (via fakeredis), and job creation: keys and allowed data roots."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

from offline_ingestor.config import parse_config
from offline_ingestor.errors import InputFileError
from offline_ingestor.ingest.job import Job, ingest_key, new_job, read_message_file
from offline_ingestor.queue.job_store import JobStore


@pytest.fixture
def store() -> Iterator[JobStore]:
    client = fakeredis.FakeRedis(decode_responses=True)
    yield JobStore(client, state_ttl_s=3600, lease_ttl_s=600)
    client.flushall()


def job(key: str = "k1", file: str = "/data/run1.hdf", job_id: str | None = None) -> Job:
    return {"key": key, "file": file, "job_id": job_id, "message_file": None}


# -- claim_for_queue -------------------------------------------------------------------------


def test_first_claim_marks_queued(store: JobStore) -> None:
    """The first enqueue of a key claims it and records file and state."""
    assert store.claim_for_queue(job(job_id="j-1")) == (True, "")
    record = store.get("k1")
    assert record is not None
    assert record.state == "queued"
    assert record.fields["file"] == "/data/run1.hdf"
    assert record.fields["job_id"] == "j-1"
    assert record.fields["attempts"] == "0"


def test_second_claim_is_a_no_op_reporting_state(store: JobStore) -> None:
    """A second enqueue of a queued key does nothing and reports its state."""
    store.claim_for_queue(job())
    store.update("k1", attempts=3)
    assert store.claim_for_queue(job()) == (False, "queued")
    record = store.get("k1")
    assert record is not None
    assert record.fields["attempts"] == "3"


@pytest.mark.parametrize("state", ["running", "done"])
def test_claim_refused_while_running_or_done(store: JobStore, state: str) -> None:
    """Running and done keys are not claimed again without force."""
    store.claim_for_queue(job())
    store.update("k1", state=state)
    assert store.claim_for_queue(job()) == (False, state)
    record = store.get("k1")
    assert record is not None
    assert record.state == state


def test_force_reclaims_and_resets_the_record(store: JobStore) -> None:
    """force re-queues a done key, clearing its old step marks."""
    store.claim_for_queue(job())
    store.update("k1", state="done", **{"step:create_dataset": "done"})
    assert store.claim_for_queue(job(), force=True) == (True, "done")
    record = store.get("k1")
    assert record is not None
    assert record.state == "queued"
    assert not record.step_done("create_dataset")


def test_failed_key_can_be_reclaimed_and_leaves_failed_registry(store: JobStore) -> None:
    """A failed key is claimable without force, and its failed entry is cleared."""
    store.claim_for_queue(job())
    store.record_failure("k1", {"message": "boom", "step": "read"})
    assert store.failure("k1") is not None
    assert store.claim_for_queue(job()) == (True, "failed")
    assert store.failure("k1") is None
    assert store.failures() == []


def test_claim_sets_an_expiry(store: JobStore) -> None:
    """Records expire after state_ttl_s so Redis does not grow forever."""
    store.claim_for_queue(job())
    assert 0 < store.redis.ttl("oi:job:k1") <= 3600


# -- records and documents -------------------------------------------------------------------


def test_update_stores_json_for_non_strings(store: JobStore) -> None:
    """update keeps strings as is and JSON-encodes other values."""
    store.update("k2", state="running", pid="p/1", attempts=2, extra={"a": 1})
    record = store.get("k2")
    assert record is not None
    assert record.fields["pid"] == "p/1"
    assert record.fields["attempts"] == "2"
    assert json.loads(record.fields["extra"]) == {"a": 1}
    assert record.fields["updated_at"].endswith("Z")


def test_get_unknown_key_is_none(store: JobStore) -> None:
    """An unknown key has no record."""
    assert store.get("nope") is None


def test_step_done(store: JobStore) -> None:
    """step_done reads the `step:<name>` marks."""
    store.update("k1", **{"step:read": "done"})
    record = store.get("k1")
    assert record is not None
    assert record.step_done("read")
    assert not record.step_done("write")


def test_doc_round_trip(store: JobStore) -> None:
    """A saved job document comes back with the next step's start; an unknown one is None."""
    document = {**job(), "dataset": {"pid": "p", "size": 3}}
    store.save_doc(document)
    assert store.begin_step("k1", "post-dataset", "chain-a").doc == document
    assert store.begin_step("other", "post-dataset", "chain-a").doc is None


# -- leases (taken by begin_step) --------------------------------------------------------------


def leased(store: JobStore, owner: str, key: str = "k1") -> bool:
    return store.begin_step(key, "extract", owner).leased


def test_lease_first_owner_acquires(store: JobStore) -> None:
    """A free key is taken by the first chain that starts a step on it."""
    assert leased(store, "chain-a") is True


def test_lease_owner_reacquires(store: JobStore) -> None:
    """The owner keeps the lease on its next steps and retries."""
    leased(store, "chain-a")
    assert leased(store, "chain-a") is True


def test_lease_other_owner_refused(store: JobStore) -> None:
    """Another chain cannot take a held key."""
    leased(store, "chain-a")
    assert leased(store, "chain-b") is False


def test_lease_release_only_by_owner(store: JobStore) -> None:
    """A release by someone else leaves the lease held; the owner's release frees it."""
    leased(store, "chain-a")
    store.release_lease("k1", "chain-b")
    assert leased(store, "chain-b") is False
    store.release_lease("k1", "chain-a")
    assert leased(store, "chain-b") is True


def test_lease_has_ttl_and_owner_refreshes_it(store: JobStore) -> None:
    """A lease expires after lease_ttl_s (a dead worker's hold ends); each step renews it."""
    leased(store, "chain-a")
    assert 0 < store.redis.ttl("oi:lease:k1") <= 600
    store.redis.expire("oi:lease:k1", 5)
    leased(store, "chain-a")
    assert store.redis.ttl("oi:lease:k1") > 5


def test_expired_lease_can_be_taken(store: JobStore) -> None:
    """Once the holder's lease has expired (its worker died), another chain may take it."""
    leased(store, "chain-a")
    store.redis.delete("oi:lease:k1")  # what expiry does
    assert leased(store, "chain-b") is True
    assert leased(store, "chain-a") is False


def test_lease_released_when_free_is_harmless(store: JobStore) -> None:
    """Releasing a lease nobody holds does nothing."""
    store.release_lease("k1", "chain-a")
    assert leased(store, "chain-b") is True


# -- redelivery counter (counted by begin_step) ------------------------------------------------


def test_runs_are_counted_per_key_and_step(store: JobStore) -> None:
    """Executions are counted separately per key and step."""
    assert [store.begin_step("k1", "read", "a").runs for _ in range(3)] == [1, 2, 3]
    assert store.begin_step("k1", "write", "a").runs == 1
    assert store.begin_step("k2", "read", "a").runs == 1


def test_clear_runs_resets_the_count(store: JobStore) -> None:
    """After clear_runs the next execution counts from 1 again."""
    store.begin_step("k1", "read", "a")
    store.begin_step("k1", "read", "a")
    store.clear_runs("k1", "read")
    assert store.begin_step("k1", "read", "a").runs == 1


def test_fail_step_records_releases_and_resets(store: JobStore) -> None:
    """fail_step puts the key in the failed registry, frees the lease, resets the count."""
    store.claim_for_queue(job())
    store.begin_step("k1", "extract", "chain-a")
    store.fail_step("k1", "extract", "chain-a", {"file": "/data/run.hdf", "message": "bad"})
    failure = store.failure("k1")
    assert failure is not None and failure["message"] == "bad"
    record = store.get("k1")
    assert record is not None and record.state == "failed"
    after = store.begin_step("k1", "extract", "chain-b")  # e.g. a requeue after the fix
    assert (after.runs, after.leased) == (1, True)


def test_a_file_finished_after_a_copy_was_failed_leaves_the_failed_registry(store: JobStore) -> None:
    """The registry lists files that need an operator: one that another copy of its chain
    finished (seen in the chaos case: a resumed copy beside a retrying one) is done."""
    store.claim_for_queue(job())
    store.begin_step("k1", "post-dataset", "chain-a")
    store.fail_step("k1", "post-dataset", "chain-a", {"file": "/data/run.hdf", "message": "lost"})
    assert store.failure("k1") is not None
    store.finish_step({**job(), "pid": "p"}, "post-job", state="done", pid="p")
    record = store.get("k1")
    assert record is not None and record.state == "done"
    assert store.failure("k1") is None and store.failures() == []


def test_unclaim_forgets_the_claim(store: JobStore) -> None:
    """A producer that could not publish removes its claim, so the next enqueue claims again."""
    store.claim_for_queue(job())
    store.unclaim("k1")
    assert store.get("k1") is None
    assert store.claim_for_queue(job()) == (True, "")


# -- failed registry -------------------------------------------------------------------------


def test_record_failure_marks_record_failed(store: JobStore) -> None:
    """record_failure sets the record's state and last_error."""
    store.claim_for_queue(job())
    store.record_failure("k1", {"message": "no schema", "step": "select"})
    record = store.get("k1")
    assert record is not None
    assert record.state == "failed"
    assert record.fields["last_error"] == "no schema"


def test_failure_returns_the_entry_with_key_and_time(store: JobStore) -> None:
    """failure() returns what was recorded plus the key and a timestamp."""
    store.record_failure("k1", {"message": "boom", "step": "read", "file": "/d/a.hdf"})
    entry = store.failure("k1")
    assert entry is not None
    assert entry["message"] == "boom"
    assert entry["step"] == "read"
    assert entry["file"] == "/d/a.hdf"
    assert entry["key"] == "k1"
    assert entry["failed_at"].endswith("Z")
    assert store.failure("k9") is None


def test_failures_lists_all_sorted_by_time(store: JobStore) -> None:
    """failures() lists every entry, oldest first."""
    store.record_failure("k1", {"message": "first"})
    store.record_failure("k2", {"message": "second"})
    store.redis.hset("oi:failed", "k0", json.dumps({"key": "k0", "failed_at": "2000-01-01T00:00:00.000Z"}))
    assert [entry["key"] for entry in store.failures()] == ["k0", "k1", "k2"]


def test_record_failure_again_replaces_the_entry(store: JobStore) -> None:
    """A key has at most one failed entry: the latest."""
    store.record_failure("k1", {"message": "first"})
    store.record_failure("k1", {"message": "second"})
    assert [entry["message"] for entry in store.failures()] == ["second"]


# -- lookups ---------------------------------------------------------------------------------


def test_find_key_by_file(store: JobStore) -> None:
    """find_key returns the key of a record for that file, or None."""
    store.claim_for_queue(job("k1", "/data/a.hdf"))
    store.claim_for_queue(job("k2", "/data/b.hdf"))
    assert store.find_key("/data/b.hdf") == "k2"
    assert store.find_key("/data/c.hdf") is None


def test_find_key_prefers_the_newest_record(store: JobStore) -> None:
    """With two records for one file (it changed), the most recently updated wins."""
    store.claim_for_queue(job("old", "/data/a.hdf"))
    store.claim_for_queue(job("new", "/data/a.hdf"))
    store.redis.hset("oi:job:old", "updated_at", "2000-01-01T00:00:00.000Z")
    assert store.find_key("/data/a.hdf") == "new"
    store.redis.hset("oi:job:new", "updated_at", "1999-01-01T00:00:00.000Z")
    assert store.find_key("/data/a.hdf") == "old"


def test_counts_per_state(store: JobStore) -> None:
    """counts() tallies records by state."""
    for key in ("a", "b", "c", "d"):
        store.claim_for_queue(job(key, f"/data/{key}.hdf"))
    store.update("b", state="running")
    store.update("c", state="done")
    store.record_failure("d", {"message": "x"})
    assert store.counts() == {"queued": 1, "running": 1, "done": 1, "failed": 1}


def test_counts_empty(store: JobStore) -> None:
    """An empty store counts nothing."""
    assert store.counts() == {}


# -- job keys --------------------------------------------------------------------------------


def test_ingest_key_job_id_wins(tmp_path: Path) -> None:
    """The file writer's job id is the key when given."""
    path = tmp_path / "f.hdf"
    path.write_bytes(b"x")
    assert ingest_key(path, "job-123") == "job-123"


def test_ingest_key_is_stable_for_an_unchanged_file(tmp_path: Path) -> None:
    """The same unchanged file gives the same key."""
    path = tmp_path / "f.hdf"
    path.write_bytes(b"x")
    assert ingest_key(path) == ingest_key(path)
    assert ingest_key(path).startswith("f-")


def test_ingest_key_changes_with_size(tmp_path: Path) -> None:
    """A file rewritten with another size gets a new key (a new ingestion)."""
    path = tmp_path / "f.hdf"
    path.write_bytes(b"x")
    stat = path.stat()
    before = ingest_key(path)
    path.write_bytes(b"xy")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ingest_key(path) != before


def test_ingest_key_changes_with_mtime(tmp_path: Path) -> None:
    """Touching a file (same size) gives a new key."""
    path = tmp_path / "f.hdf"
    path.write_bytes(b"x")
    before = ingest_key(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert ingest_key(path) != before


def test_ingest_key_differs_by_path(tmp_path: Path) -> None:
    """Two files with equal size and mtime still get different keys."""
    first, second = tmp_path / "a.hdf", tmp_path / "b.hdf"
    for path in (first, second):
        path.write_bytes(b"x")
        os.utime(path, ns=(0, 1_000_000_000))
    assert ingest_key(first) != ingest_key(second)


# -- new_job and allowed roots ---------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(allowed root with a data file, outside folder with a data file)."""
    allowed = tmp_path / "data"
    outside = tmp_path / "secret"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "run.hdf").write_bytes(b"x")
    (outside / "passwd.hdf").write_bytes(b"x")
    return allowed, outside


def config_with_roots(*roots: Path) -> list[str]:
    """``ingestion.allowed_data_roots`` as the config gives it to ``new_job``."""
    return parse_config(
        {"ingestion": {"allowed_data_roots": [str(root) for root in roots]}}
    ).ingestion.allowed_data_roots


def test_new_job_inside_root(roots: tuple[Path, Path]) -> None:
    """A file inside an allowed root becomes a job with its resolved path and key."""
    allowed, _ = roots
    made = new_job(allowed / "run.hdf", config_with_roots(allowed))
    assert made["file"] == str((allowed / "run.hdf").resolve())
    assert made["key"] == ingest_key(Path(made["file"]))
    assert made["job_id"] is None


def test_new_job_refuses_file_outside_roots(roots: tuple[Path, Path]) -> None:
    """A file outside every allowed root is refused, naming it."""
    allowed, outside = roots
    with pytest.raises(InputFileError, match=r"refused: .*passwd\.hdf is outside the allowed data roots"):
        new_job(outside / "passwd.hdf", config_with_roots(allowed))


def test_new_job_refuses_escape_via_dotdot(roots: tuple[Path, Path]) -> None:
    """`root/../secret/file` is resolved first, and refused."""
    allowed, _ = roots
    with pytest.raises(InputFileError, match="outside the allowed data roots"):
        new_job(f"{allowed}/../secret/passwd.hdf", config_with_roots(allowed))


def test_new_job_refuses_escape_via_symlink(roots: tuple[Path, Path]) -> None:
    """A symlink inside the root pointing outside is refused."""
    allowed, outside = roots
    link = allowed / "innocent.hdf"
    link.symlink_to(outside / "passwd.hdf")
    with pytest.raises(InputFileError, match="outside the allowed data roots"):
        new_job(link, config_with_roots(allowed))


def test_new_job_refuses_sibling_with_root_as_name_prefix(tmp_path: Path) -> None:
    """`/x/data-other` is not inside root `/x/data` (component-wise, not string prefix)."""
    allowed = tmp_path / "data"
    sibling = tmp_path / "data-other"
    allowed.mkdir()
    sibling.mkdir()
    (sibling / "f.hdf").write_bytes(b"x")
    with pytest.raises(InputFileError):
        new_job(sibling / "f.hdf", config_with_roots(allowed))


def test_new_job_accepts_file_under_symlinked_root(roots: tuple[Path, Path], tmp_path: Path) -> None:
    """A root given through a symlink still admits the files under its target."""
    allowed, _ = roots
    alias = tmp_path / "alias"
    alias.symlink_to(allowed)
    made = new_job(allowed / "run.hdf", config_with_roots(alias))
    assert made["file"] == str((allowed / "run.hdf").resolve())


def test_new_job_without_roots_accepts_anything(roots: tuple[Path, Path]) -> None:
    """With no allowed_data_roots configured, no path is refused."""
    _, outside = roots
    made = new_job(outside / "passwd.hdf", [])
    assert made["file"].endswith("passwd.hdf")


def test_new_job_job_id_from_message_file(roots: tuple[Path, Path], tmp_path: Path) -> None:
    """The done-writing message file's job_id becomes the job id and the key."""
    allowed, _ = roots
    message = tmp_path / "run.message.json"
    message.write_text(json.dumps({"job_id": "fw-42", "file_name": "run.hdf"}))
    made = new_job(allowed / "run.hdf", [], message_file=str(message))
    assert made["job_id"] == "fw-42"
    assert made["key"] == "fw-42"
    assert made["message_file"] == str(message)


def test_new_job_explicit_job_id_beats_message_file(roots: tuple[Path, Path], tmp_path: Path) -> None:
    """An explicit job id is kept even when a message file is given."""
    allowed, _ = roots
    message = tmp_path / "m.json"
    message.write_text(json.dumps({"job_id": "from-file"}))
    made = new_job(allowed / "run.hdf", [], job_id="given", message_file=str(message))
    assert made["key"] == "given"


def test_new_job_refuses_a_missing_path_or_a_folder_unless_told(roots: tuple[Path, Path]) -> None:
    """``must_exist`` (every door but the Python producer API): missing or not a file is refused."""
    allowed, _ = roots
    with pytest.raises(InputFileError, match=r"refused: .*later\.hdf does not exist"):
        new_job(allowed / "later.hdf", [str(allowed)])
    with pytest.raises(InputFileError, match=r"refused: .* is not a file"):
        new_job(allowed, [])
    assert new_job(allowed / "later.hdf", [str(allowed)], must_exist=False)["file"].endswith("later.hdf")


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_bad_message_file_falls_back_to_the_path_key(tmp_path: Path, content: str) -> None:
    """A message file we cannot use gives no job id (the path key) but is still listed."""
    message = tmp_path / "m.json"
    message.write_text(content)
    found = read_message_file(str(message), tmp_path / "run.hdf", parse_config({}))
    assert found.job_id is None and found.listed_file == str(message.resolve())


# -- begin_step / finish_step (the worker's one-round-trip hot path) -------------------------


def test_begin_step_counts_leases_and_loads_in_one_call(store: JobStore) -> None:
    """begin_step counts the run, takes the lease and returns the record (marked running with the
    lease: test_step_round_trips.py) and document."""
    store.claim_for_queue(job())
    store.save_doc({**job(), "schema_id": "s"})
    start = store.begin_step("k1", "extract", "chain-a")
    assert (start.runs, start.leased) == (1, True)
    assert start.record is not None and start.record.fields["enqueued_at"]
    assert start.doc is not None and start.doc["schema_id"] == "s"
    assert store.begin_step("k1", "extract", "chain-a").runs == 2  # same chain: lease confirmed
    other = store.begin_step("k1", "extract", "chain-b")
    assert other.leased is False


def test_finish_step_saves_marks_done_and_resets_runs(store: JobStore) -> None:
    """finish_step stores the document, marks the step done and clears its run count."""
    store.claim_for_queue(job())
    store.begin_step("k1", "extract", "chain-a")
    store.finish_step({**job(), "variables": {}}, "extract", pid="p1")
    record = store.get("k1")
    assert record is not None and record.step_done("extract") and record.fields["pid"] == "p1"
    start = store.begin_step("k1", "post-dataset", "chain-a")
    assert start.doc == {**job(), "variables": {}}
    assert store.begin_step("k1", "extract", "chain-a").runs == 1


def test_the_last_step_leaves_the_record_and_drops_the_document(store: JobStore) -> None:
    """A finished file keeps its record (state done, pid) for state_ttl_s, not its document."""
    store.claim_for_queue(job())
    store.finish_step({**job(), "variables": {}}, "post-dataset", pid="p1")
    store.finish_step({**job(), "pid": "p1"}, "post-origdatablock", pid="p1", state="done")
    record = store.get("k1")
    assert record is not None and record.state == "done" and record.fields["pid"] == "p1"
    assert not store.redis.exists("oi:doc:k1")


def test_forgive_run_uncounts_one_execution(store: JobStore) -> None:
    """An execution stopped on purpose (bounded stop) does not count towards the cap."""
    store.begin_step("k1", "build-dataset", "a")
    store.begin_step("k1", "build-dataset", "a")
    store.forgive_run("k1", "build-dataset")
    assert store.begin_step("k1", "build-dataset", "a").runs == 2
    store.forgive_run("k2", "build-dataset")  # nothing counted: stays uncounted
    assert store.begin_step("k2", "build-dataset", "a").runs == 1


def test_a_finished_record_drops_its_step_flags_but_still_answers_done(store: JobStore) -> None:
    """The last step drops the per-step flags (~150 B per finished file for state_ttl_s); every
    step still reads as done, the write stamps stay (a late copy of a write step is still
    refused while the last write may land), and enqueueing the file again answers "already done"."""
    store.claim_for_queue(job(), claim="c-1")
    store.mark_published("k1")
    for step in ("select-schema", "extract", "build-dataset", "post-dataset"):
        store.begin_step("k1", step, "chain-a")
        store.finish_step(job(), step, pid="p1")
    store.note_write("k1", "post-dataset", 100.0, writer="m-1", window_s=30)
    store.note_write("k1", "post-origdatablock", 101.0, writer="m-2", window_s=30)
    store.note_wait("k1", "post-origdatablock")
    store.finish_step(job(), "post-origdatablock", pid="p1", schema_id="s", state="done")
    record = store.get("k1")
    assert record is not None and record.state == "done"
    assert not [name for name in record.fields if name.startswith(("step:", "waits:"))]
    assert record.fields["writer:post-origdatablock"] == "m-2"
    assert store.note_write("k1", "post-origdatablock", 102.0, writer="m-3", window_s=30) > 0
    assert all(record.step_done(step) for step in ("select-schema", "post-origdatablock", "a-new-step"))
    assert record.write_started("post-origdatablock") == 101.0
    kept = {name: record.fields[name] for name in ("file", "claim", "published", "pid", "schema_id", "step")}
    assert kept == {"file": "/data/run1.hdf", "claim": "c-1", "published": "1", "pid": "p1", "schema_id": "s",
                    "step": "post-dataset"}  # fmt: skip
    assert store.claim_for_queue(job()) == (False, "done")
    assert store.claim_for_queue(job(), claim="c-1", force=True) == (False, "done")  # its own spooled retry
    assert store.claim_for_queue(job(), force=True) == (True, "done")
    assert store.get("k1").fields["write:post-origdatablock"] == "101.0"  # type: ignore[union-attr]

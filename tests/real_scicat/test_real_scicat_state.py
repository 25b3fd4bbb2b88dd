"""Exactly once against what the real SciCat already holds (issue 25, items 2 and 3).

* Item 2: an admin POSTs a second origdatablock listing an ingested file (the backend ``$inc``'s
  the dataset's totals); a rerun of ``ingest-now`` refuses it as a conflict naming the admin's
  DELETE exactly as ``audit`` prints it, and writes nothing (the totals are not patched).
* Item 3: a proxy that prefixes the pid of each dataset POST, so that the backend answers 201
  with another pid than the one sent; with the job-id search off and ``save_file_hash: true``
  two runs of ``ingest-now`` (and a worker, then ``enqueue --force``) leave one dataset.

tests/scicat/test_scicat_state.py does the same (and more) against the stand-in.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from real_world import Holdings, blocks_of, config_for, env_for, holdings, start_worker, ymir_folder

from helpers import BIN, audit, ymir_file
from offline_ingestor.testing.processes import RedisServer, wait_for
from offline_ingestor.testing.real_scicat import RealScicat
from offline_ingestor.testing.real_scicat.proxy import RecordingProxy

PREFIX = "rewritten/"


def _ingest_now(config: Path, path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "offline-ingestor"), "ingest-now", "-c", str(config), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env_for("ingestor"), timeout=180)


def _enqueue(config: Path, path: Path, *args: str) -> None:
    cmd = [str(BIN / "offline-ingestor"), "enqueue", "-c", str(config), *args, str(path)]
    ran = subprocess.run(cmd, capture_output=True, text=True, env=env_for("ingestor"), timeout=60)
    assert ran.returncode == 0, ran.stderr[-2000:]


def _state(config: Path, path: Path) -> dict[str, Any]:
    """The file's job record in Redis (``status --json``)."""
    cmd = [str(BIN / "offline-ingestor"), "status", "-c", str(config), "--json", str(path)]
    ran = subprocess.run(cmd, capture_output=True, text=True, env=env_for("ingestor"), timeout=60)
    assert ran.returncode == 0, ran.stderr[-2000:]
    record: dict[str, Any] = json.loads(ran.stdout)
    return record


def _wait_state(config: Path, path: Path, what: str) -> dict[str, Any]:
    """Wait until the file's job is done or failed; its record."""
    last: dict[str, Any] = {}

    def settled() -> bool:
        last.clear()
        last.update(_state(config, path))
        return last.get("state") in ("done", "failed")

    try:
        wait_for(settled, timeout=120, what=what, every=0.5)
    except AssertionError:
        raise AssertionError(f"{what} not settled: {last}") from None
    return last


def _datasets(scicat: RealScicat, data: Path) -> list[dict[str, Any]]:
    """The datasets of the test's source folder, read as admin directly on the backend."""
    where = json.dumps({"where": {"sourceFolder": str(ymir_folder(data))}})
    answer = scicat.admin.get(f"{scicat.url_v3}/datasets", params={"filter": where}, timeout=30)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def _totals(scicat: RealScicat, pid: str) -> tuple[int, int]:
    answer = scicat.admin.get(f"{scicat.url_v3}/datasets/{quote(pid, safe='')}", timeout=30)
    answer.raise_for_status()
    doc = answer.json()
    return doc["size"], doc["numberOfFiles"]


def _writes(proxy: RecordingProxy) -> list[str]:
    """The requests that changed SciCat (logins aside; a POST answered 409 stored nothing)."""
    return [f"{m} {p}" for m, p, s in proxy.requests if m != "GET" and s < 300 and "/auth/" not in p]


def test_two_blocks_listing_one_file_are_a_conflict_never_a_sum(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """Item 2: a second block (posted by an admin) listing the file makes the rerun of ``ingest-now``
    exit non-zero with one ``error:`` line naming the admin's DELETE as ``audit`` prints it; the
    rerun writes nothing and the dataset's totals (summed by the backend) stay as they were."""
    scicat, data = alive_scicat, tmp_path / "data"
    proxy = RecordingProxy(scicat.port).start()
    try:
        config = config_for(tmp_path / "oi.yml", proxy.url_v3, data, "ingestor")
        path = ymir_file(data, job_id=str(uuid.uuid4()))
        first = _ingest_now(config, path)
        assert first.returncode == 0, first.stderr[-2000:]
        (dataset,) = _datasets(scicat, data)
        pid = dataset["pid"]
        (block,) = blocks_of(scicat, pid)
        one = _totals(scicat, pid)
        assert one == (block["size"], len(block["dataFileList"]))
        # Given an admin's second block listing the same file
        copy = {k: block[k] for k in ("datasetId", "size", "ownerGroup", "accessGroups")}
        copy["dataFileList"] = [
            {k: v for k, v in entry.items() if k not in ("_id", "id")} for entry in block["dataFileList"]
        ]
        posted = scicat.admin.post(f"{scicat.url_v3}/origdatablocks", json=copy, timeout=30)
        assert posted.status_code == 201, posted.text[:500]
        before = _totals(scicat, pid)
        assert before == (2 * one[0], 2 * one[1])  # the backend $inc'ed the dataset's totals
        code, classes, lines = audit(config)
        assert code == 1 and classes == {path.name: "duplicate-blocks"}, lines
        (dup,) = [line for line in lines if line.get("class") == "duplicate-blocks"]
        call, repair = dup["admin"]  # the DELETE of the later block, then `audit --repair`
        assert repair.startswith("offline-ingestor audit --repair"), dup["admin"]
        later = posted.json()
        later_id = str(later.get("_id") or later.get("id"))
        assert later_id in call and "curl -X DELETE" in call, (call, later)
        # When the file is run again
        proxy.clear()
        rerun = _ingest_now(config, path)
        # Then it is refused, naming the admin's call exactly as the audit prints it
        assert rerun.returncode != 0, rerun.stdout + rerun.stderr
        errors = [line for line in rerun.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, rerun.stderr[-3000:]
        assert call in errors[0], (call, errors[0])
        print(f"rerun: exit {rerun.returncode}, {errors[0]}\nrequests: {proxy.requests}")
        # And nothing was written: the totals are not patched, the two blocks stay
        assert _writes(proxy) == [], proxy.requests
        assert _totals(scicat, pid) == before
        assert len(blocks_of(scicat, pid)) == 2
        assert holdings(scicat, ymir_folder(data)) == Holdings(1, 2, 0)
    finally:
        proxy.stop()


def test_a_pid_the_proxy_rewrote_is_found_by_the_rerun_of_ingest_now(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """Item 3: the backend stores the dataset under the proxy's pid and answers 201 with it; the
    pid is kept beside the hash file, so the rerun finds it: exit 0 twice, 1 dataset, 1 block."""
    scicat, data = alive_scicat, tmp_path / "data"
    proxy = RecordingProxy(scicat.port)
    proxy.pid_prefix = PREFIX
    proxy.start()
    try:
        config = config_for(
            tmp_path / "oi.yml",
            proxy.url_v3,
            data,
            "ingestor",
            ingestion={
                "check_if_dataset_exists_by_metadata": False,
                "file_handling": {"ingestor_files_directory": str(data / "ingestor"), "save_file_hash": True},
            },
        )
        path = ymir_file(data, job_id=str(uuid.uuid4()))
        first = _ingest_now(config, path)
        assert first.returncode == 0, first.stderr[-2000:]
        (posted,) = [e for e in proxy.exchanges if e.kind == "POST /api/v3/datasets"]
        assert posted.status == 201 and json.loads(posted.answer or b"{}")["pid"].startswith(PREFIX)
        proxy.clear()
        again = _ingest_now(config, path)
        assert again.returncode == 0, again.stderr[-2000:]
        assert _writes(proxy) == [], proxy.requests  # found, not posted again
        (dataset,) = _datasets(scicat, data)
        assert dataset["pid"].startswith(PREFIX + "20.500.12269/"), dataset["pid"]
        assert holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0)
        assert f'"pid": "{dataset["pid"]}"' in (data / "ingestor" / f"{path.stem}.scicat-pid").read_text()
        # The audit looks where the rerun looked: ingested, no orphan to delete.
        _, classes, lines = audit(config)
        assert classes == {path.name: "ingested"}, lines
    finally:
        proxy.stop()


def test_a_worker_keeps_a_pid_the_proxy_rewrote_across_enqueue_force(
    alive_scicat: RealScicat, tmp_path: Path
) -> None:
    """Item 3 (worker): enqueue, then ``enqueue --force`` (the job's records gone): still 1 dataset
    and 1 block, and the rerun wrote nothing."""
    scicat, data = alive_scicat, tmp_path / "data"
    proxy = RecordingProxy(scicat.port)
    proxy.pid_prefix = PREFIX
    proxy.start()
    redis = RedisServer(tmp_path / "redis").start()
    config = config_for(
        tmp_path / "oi.yml",
        proxy.url_v3,
        data,
        "ingestor",
        redis=redis,
        ingestion={
            "check_if_dataset_exists_by_metadata": False,
            "file_handling": {"ingestor_files_directory": str(data / "ingestor"), "save_file_hash": True},
        },
    )
    worker = start_worker(config, tmp_path, "ingestor")
    try:
        path = ymir_file(data, job_id=str(uuid.uuid4()))
        _enqueue(config, path)
        wait_for(
            lambda: holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0),
            timeout=120,
            what="the first run",
        )
        (dataset,) = _datasets(scicat, data)
        assert dataset["pid"].startswith(PREFIX), dataset["pid"]
        _wait_state(config, path, "the first run")
        proxy.clear()
        _enqueue(config, path, "--force")
        record = _wait_state(config, path, "the forced rerun")  # --force left it queued
        assert record["state"] == "done", record
        print(f"forced rerun: {proxy.requests}")
        # The rerun ran (it read the dataset under the rewritten pid) and wrote nothing
        assert any(m == "GET" and quote(PREFIX, safe="") in p for m, p, _ in proxy.requests), proxy.requests
        assert _writes(proxy) == [], proxy.requests
        assert holdings(scicat, ymir_folder(data)) == Holdings(1, 1, 0)
        assert [d["pid"] for d in _datasets(scicat, data)] == [dataset["pid"]]
    finally:
        worker.stop()
        redis.stop(kill=True)
        proxy.stop()

"""Exactly once against what a SciCat already holds (issue 25).

Each ``ingest`` call is a run whose Redis records are gone (what ``ingest-now``, the drop-in,
``enqueue --force`` and ``audit --enqueue-missing`` do): only SciCat's answers tell it what
exists. The stand-in behaves like the backend where it matters here: its dataset DELETE
leaves the dataset's origdatablocks behind, and SciCat's ``$inc`` adds every block's totals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from structlog.testing import capture_logs

from helpers import ymir_file
from offline_ingestor import metrics
from offline_ingestor.errors import IdempotencyConflict
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.scicat.admin_calls import delete_block_call
from offline_ingestor.testing import Fault

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def run(config: Any, path: Path) -> dict[str, Any]:
    """One run of the file, in a new process's state (what ``ingest-now`` does)."""
    job = new_job(path, config.ingestion.allowed_data_roots, must_exist=False)
    return ingest(Runtime.from_config(config), job, policy=NO_WAIT, sleep=lambda _: None)


def as_admin(standin: Any, method: str, route: str, body: Any = None) -> requests.Response:
    """A call an admin makes by hand (``DELETE``/``PATCH``/``POST`` as the ``admin`` account)."""
    token = standin.login_token("admin")
    response = requests.request(
        method,
        f"{standin.url_v3}/{route}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text
    return response


def blocks_of(standin: Any, pid: str) -> list[dict[str, Any]]:
    return [block for block in standin.origdatablocks if block["datasetId"] == pid]


def totals(standin: Any, pid: str) -> tuple[int, int]:
    dataset = standin.datasets[pid]
    return dataset["size"], dataset["numberOfFiles"]


def test_the_standins_dataset_delete_does_not_cascade(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """Like the backend's, the stand-in's DELETE of a dataset leaves its origdatablocks."""
    job = run(make_config(standin), ymir_file(data_root))
    as_admin(standin, "DELETE", f"datasets/{quote(job['pid'], safe='')}")
    assert job["pid"] not in standin.datasets
    assert len(blocks_of(standin, job["pid"])) == 1


def test_a_file_whose_dataset_an_admin_deleted_gets_one_block_again(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """Item 1: after a 201 for our own pid, the dataset's blocks are listed before posting one."""
    # Given a file ingested, then its dataset deleted by an admin (its block stays in SciCat)
    config = make_config(standin)
    path = ymir_file(data_root)
    first = run(config, path)
    one_block = totals(standin, first["pid"])
    as_admin(standin, "DELETE", f"datasets/{quote(first['pid'], safe='')}")
    # When the file is ingested again
    with capture_logs() as logs:
        again = run(config, path)
    # Then the dataset is made again, under its pid, with one block listing the file (the one
    # the deleted dataset left) and totals of one block, not two
    assert again["pid"] == first["pid"] and again["dataset_created"] is True
    (block,) = blocks_of(standin, again["pid"])
    assert block["dataFileList"][0]["path"] == str(path)
    assert totals(standin, again["pid"]) == one_block
    assert any(event["event"] == "scicat.leftover_block_adopted" for event in logs)


def duplicated(standin: Any, config: Any, path: Path, *, totals_left_short: bool) -> dict[str, Any]:
    """A file catalogued with two blocks listing it (what item 1's bug left behind)."""
    job = run(config, path)
    (block,) = blocks_of(standin, job["pid"])
    one = totals(standin, job["pid"])
    copy = {key: block[key] for key in ("size", "chkAlg", "ownerGroup", "accessGroups")}
    copy["dataFileList"] = [
        {key: value for key, value in entry.items() if key not in ("_id", "id")}
        for entry in block["dataFileList"]
    ]
    as_admin(standin, "POST", "origdatablocks", {"datasetId": job["pid"], **copy})
    if totals_left_short:
        # SciCat stopped before adding the second block's totals: the dataset shows one block's.
        fields = {"size": one[0], "numberOfFiles": one[1]}
        as_admin(standin, "PATCH", f"datasets/{quote(job['pid'], safe='')}", fields)
    return job


@pytest.mark.parametrize("totals_left_short", [False, True], ids=["summed-by-scicat", "left-short"])
def test_two_blocks_listing_one_file_are_a_conflict_never_a_sum(
    standin: Any, make_config: Any, data_root: Path, monkeypatch: pytest.MonkeyPatch, totals_left_short: bool
) -> None:
    """Item 2: a rerun meeting two blocks of its file refuses (event, metric, admin call), no PATCH."""
    # Given a file whose dataset holds two blocks listing it
    config = make_config(standin)
    path = ymir_file(data_root)
    job = duplicated(standin, config, path, totals_left_short=totals_left_short)
    before = totals(standin, job["pid"])
    _, later = sorted(blocks_of(standin, job["pid"]), key=lambda block: block["createdAt"])
    conflicts: list[str] = []
    monkeypatch.setattr(metrics, "count_conflict", conflicts.append)
    requests_before = len(standin.requests)
    # When the file is run again
    with capture_logs() as logs, pytest.raises(IdempotencyConflict) as refused:
        run(config, path)
    # Then it is a conflict naming the admin's call exactly as the audit prints it
    call = delete_block_call(config.scicat, later["_id"])
    assert call in str(refused.value) and call in (refused.value.hint or "")
    assert refused.value.step == "post-origdatablock"
    assert conflicts == ["duplicate-blocks"]
    (event,) = [event for event in logs if event["event"] == "scicat.duplicate_blocks"]
    assert event["log_level"] == "warning" and event["dataset_pid"] == job["pid"]
    # And nothing was written: the totals are not "repaired" to the sum of the duplicates
    written = [(method, route) for method, route, _ in standin.requests[requests_before:] if method != "GET"]
    assert [route for _, route in written if "auth" not in route] == [], written
    assert totals(standin, job["pid"]) == before
    assert len(blocks_of(standin, job["pid"])) == 2


def test_the_conflict_is_a_non_zero_exit_of_ingest_now(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """Item 2, as an operator meets it: ``ingest-now`` exits 1 and prints the admin's call."""
    from helpers import cli, write_config

    config = make_config(standin)
    path = ymir_file(data_root)
    job = duplicated(standin, config, path, totals_left_short=True)
    later = sorted(blocks_of(standin, job["pid"]), key=lambda block: block["createdAt"])[1]
    operator_config = write_config(tmp_path / "c.yml", standin, data_root)
    result = cli("offline-ingestor", "ingest-now", str(path), config=operator_config)
    assert result.returncode == 1, result.stdout
    assert delete_block_call(config.scicat, later["_id"]) in result.stderr.strip().splitlines()[-1]


def test_audit_repair_never_sums_duplicates(standin: Any, make_config: Any, data_root: Path) -> None:
    """Item 2 for ``audit --repair``: the totals repair refuses blocks that list one file twice."""
    from offline_ingestor.scicat import ScicatClient
    from offline_ingestor.scicat.totals import check_totals, repair_totals

    config = make_config(standin)
    job = duplicated(standin, config, ymir_file(data_root), totals_left_short=True)
    before = totals(standin, job["pid"])
    client = ScicatClient(config.scicat)
    with pytest.raises(IdempotencyConflict, match="not a sum"):
        repair_totals(client, check_totals(client, job["pid"]))
    assert totals(standin, job["pid"]) == before


def test_a_first_ingestion_whose_dataset_answer_was_lost_is_created(
    standin: Any, make_config: Any, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 4: the dataset POST stored, its answer cut: the retry finds it, the block is new."""
    counted: list[str] = []
    monkeypatch.setattr(metrics, "count_file", lambda outcome, schema: counted.append(outcome))
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", reset_connection=True, after_handling=True))
    with capture_logs() as logs:
        job = run(make_config(standin), ymir_file(data_root))
    assert job["dataset_created"] is False and job["origdatablock_created"] is True
    (finished,) = [event for event in logs if event["event"] == "ingest.finished"]
    assert finished["outcome"] == "created" and counted == ["created"]
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1


def ingest_now_args(path: Path, config: Path) -> list[str]:
    return ["offline-ingestor", "ingest-now", str(path), "-c", str(config)]


def drop_in_args(path: Path, config: Path) -> list[str]:
    return ["scicat_background_ingestor", "-c", str(config), "--nexus-file", str(path)]


def rewrite_pids(standin: Any, how: str) -> None:
    """A deployment or proxy that prefixes the pids it is sent, or makes its own."""
    if how == "prefixes":
        standin.rewrite_pid_prefix = "proxy-"
    else:
        standin.drop_client_pids = True


#: Prefixed pids make a rerun's POST a 409 that then reads 404 (before: exit 75, retried for
#: ever); pids of SciCat's own make it a second dataset (before: exit 0 twice, 2 datasets).
MISBEHAVIOURS = ["prefixes", "makes-its-own"]


@pytest.mark.parametrize("how", MISBEHAVIOURS)
@pytest.mark.parametrize("door", [ingest_now_args, drop_in_args], ids=["ingest-now", "drop-in"])
def test_a_pid_scicat_rewrote_is_found_by_the_next_run_of_a_command(
    standin: Any, data_root: Path, tmp_path: Path, door: Any, how: str
) -> None:
    """Item 3: with the job-id search off, the pid SciCat returned is kept beside the hash file."""
    from helpers import cli, write_config

    # Given a SciCat (or proxy) that rewrites the pids it is sent, and no job-id search
    rewrite_pids(standin, how)
    config = write_config(tmp_path / "c.yml", standin, data_root, scicat={"max_retries": 0})
    path = ymir_file(data_root)
    # When the file is ingested, then ingested again by a new process
    first = cli(*door(path, config))
    again = cli(*door(path, config))
    # Then both runs succeed and SciCat holds one dataset with one block
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    (pid,) = standin.datasets
    assert pid.startswith("proxy-" if how == "prefixes" else "20.500.12269/")
    assert len(standin.origdatablocks) == 1
    assert '"pid": "' + pid + '"' in (data_root / "ingestor/run-0001.scicat-pid").read_text()


@pytest.mark.parametrize("how", MISBEHAVIOURS)
def test_the_audit_finds_a_dataset_under_the_pid_scicat_rewrote(
    standin: Any, data_root: Path, tmp_path: Path, how: str
) -> None:
    """Item 3: the audit looks where reruns look, so the file is ``ingested``, not ``missing``
    with its dataset an ``orphan`` (whose admin DELETE would remove the good dataset)."""
    from helpers import audit, cli, write_config

    rewrite_pids(standin, how)
    config = write_config(tmp_path / "c.yml", standin, data_root, scicat={"max_retries": 0})
    path = ymir_file(data_root)
    assert cli(*ingest_now_args(path, config)).returncode == 0
    code, classes, lines = audit(config)
    assert classes == {path.name: "ingested"}, lines
    assert code == 0


@pytest.mark.parametrize("how", MISBEHAVIOURS)
def test_the_worker_keeps_a_rewritten_pid_in_redis(
    standin: Any, make_config: Any, data_root: Path, redis_server: Any, how: str
) -> None:
    """Item 3 (worker): a rerun with its records gone (enqueue --force) finds the pid in Redis."""
    import redis

    from offline_ingestor.queue.pid_memo import RedisPidMemo

    rewrite_pids(standin, how)
    config = make_config(standin)
    client = redis.Redis.from_url(redis_server.url)
    path = ymir_file(data_root)

    def worker_run() -> dict[str, Any]:
        rt = Runtime.from_config(config)
        rt.pid_memo = RedisPidMemo(client, config)  # as worker/tasks.py gives its runtimes
        job = new_job(path, config.ingestion.allowed_data_roots)
        return ingest(rt, job, policy=NO_WAIT, sleep=lambda _: None)

    first = worker_run()
    client.delete(*client.keys("oi:job:*") or ["none"])  # what --force and a lost record do
    again = worker_run()
    assert first["pid"] != first["requested_pid"] and again["pid"] == first["pid"]
    assert again["dataset_created"] is False and again["origdatablock_created"] is False
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1
    assert not (data_root / "ingestor/run-0001.scicat-pid").exists()  # the worker writes Redis only


@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.parametrize("how", MISBEHAVIOURS)
def test_ingest_now_finds_the_pid_a_worker_kept(
    standin: Any, queue_config: Any, start_worker: Any, data_root: Path, how: str
) -> None:
    """A file the workers ingested under a rewritten pid, run again by ``ingest-now`` with the
    same config (queue enabled, no job-id search): found through the workers' Redis memo."""
    from helpers import cli, ingestor_cli, wait_for

    rewrite_pids(standin, how)
    config = queue_config()
    start_worker(config)
    path = ymir_file(data_root)
    assert ingestor_cli("enqueue", "-c", str(config), str(path)).returncode == 0
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the worker's ingestion")
    again = cli("offline-ingestor", "ingest-now", "-c", str(config), str(path))
    assert again.returncode == 0, again.stderr
    (pid,) = standin.datasets
    assert again.stdout.strip() == pid
    assert len(standin.origdatablocks) == 1


def test_a_rewritten_pid_kept_nowhere_is_a_conflict_not_exit_0(
    standin: Any, make_config: Any, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 3, no memo and no job-id search: the file is completed, then refused as a conflict."""
    conflicts: list[str] = []
    monkeypatch.setattr(metrics, "count_conflict", conflicts.append)
    standin.drop_client_pids = True
    config = make_config(standin)
    with pytest.raises(IdempotencyConflict, match="check_if_dataset_exists_by_metadata") as refused:
        run(config, ymir_file(data_root))  # a runtime with no pid memo
    (pid,) = standin.datasets
    assert pid in str(refused.value) and refused.value.hint
    assert len(blocks_of(standin, pid)) == 1  # the dataset is whole: only reruns are refused
    assert conflicts == ["pid-not-findable"]


def test_a_dataset_catalogued_under_its_pre_issue_12_pid_is_found_and_mapped(
    standin: Any, make_config: Any, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5: ``audit`` finds a dataset under the old path+size+mtime pid; the migration maps it."""
    import hashlib
    import os

    from offline_ingestor.audit import AuditOptions, run_audit
    from offline_ingestor.audit.actions import map_legacy_pids
    from offline_ingestor.ingest import steps
    from offline_ingestor.ingest.pipeline import command_runtime

    # Given a file catalogued before issue 12: a derived pid from its queue key of then
    config = make_config(standin, dataset={"generate_dataset_pid": True})
    path = ymir_file(data_root)
    file = os.path.realpath(path)
    info = os.stat(file)
    then = "f-" + hashlib.sha256(f"{file}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()[:32]
    with monkeypatch.context() as old_code:
        old_code.setattr(steps, "scicat_identity", lambda job: then)
        legacy = run(config, path)
    # When the audit looks at it
    outcome = run_audit(config, AuditOptions(use_redis=False))
    (result,) = [item for item in outcome.problems if item.file == file]
    # Then it names the class and the one-time command (and never enqueues it as missing)
    assert result.cls == "legacy-pid" and result.pid == legacy["pid"]
    assert result.admin == [f"offline-ingestor audit --map-legacy-pids {file}"]
    # And once mapped, a rerun finds the dataset, and the audit says ingested
    (action,) = map_legacy_pids(config, outcome.problems)
    assert action.endswith("kept in file")
    job = new_job(path, config.ingestion.allowed_data_roots)
    rerun = ingest(command_runtime(config), job, policy=NO_WAIT, sleep=lambda _: None)
    assert rerun["pid"] == legacy["pid"] and rerun["dataset_created"] is False
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1
    assert not run_audit(config, AuditOptions(use_redis=False)).problems

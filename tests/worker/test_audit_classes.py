"""``offline-ingestor audit`` on a tree where every class occurs, produced the way it happens.

One file per class, each broken for real against the SciCat stand-in, a real redis-server
and real workers; then ``--enqueue-missing`` + a worker + ``--repair``, and a second audit
where only what needs an admin (or a decision) is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import BIN, audit, ingestor_cli, wait_for, ymir_file
from offline_ingestor.queue.job_store import JobStore
from offline_ingestor.testing import Fault

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def ingest_now(config: Path, path: Path) -> None:
    result = ingestor_cli("ingest-now", "-c", str(config), str(path))
    assert result.returncode == 0, result.stderr


def admin_token(standin: Any) -> str:
    return str(standin.login_token("admin"))


def test_every_class_then_enqueue_repair_and_second_audit(
    standin: Any, redis_server: Any, queue_config: Any, start_worker: Any, data_root: Path
) -> None:
    config = queue_config(queue={"visibility_timeout_s": 8, "task_time_limit_s": 6, "retry_backoff_max_s": 1})
    files = {
        name: ymir_file(data_root, f"{name}.hdf")
        for name in ("ok", "nofiles", "totals", "dup", "touched", "deleted", "missing", "queued", "running")
    }
    files["failed"] = ymir_file(data_root, "failed.hdf", proposal="999999")  # unknown to SciCat
    notes = data_root / "ess/raw/ymir/2024/876380/notes.txt"
    notes.write_text("not a NeXus file")
    for name in ("ok", "totals", "dup", "touched", "deleted"):
        ingest_now(config, files[name])

    # ingest-now killed between the dataset POST and the block POST.
    standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", delay_s=30, reset_connection=True))
    before = len(standin.datasets)
    env = {**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"}
    process = subprocess.Popen(
        [str(BIN / "offline-ingestor"), "ingest-now", "-c", str(config), str(files["nofiles"])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: len(standin.datasets) == before + 1, what="the dataset POST")
    time.sleep(0.3)  # the block POST is now in flight (held by the stand-in)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    standin.clear_faults()

    # SciCat crashed between storing the block and $inc-ing the dataset's totals.
    # (Made through the stand-in's store until its crash-between-block-and-totals fault exists.)
    by_file = _pids_by_file(standin)
    with standin._store.lock:
        stored = standin._store.datasets[by_file["totals.hdf"]]
        stored["size"], stored["numberOfFiles"] = 0, 0

    # A second block for the same file, posted by hand.
    block = next(b for b in standin.origdatablocks if b["datasetId"] == by_file["dup.hdf"])
    body = {
        "datasetId": block["datasetId"],
        "size": block["size"],
        "dataFileList": [
            {k: v for k, v in f.items() if k not in ("_id", "id")} for f in block["dataFileList"]
        ],
    }
    answer = requests.post(
        f"{standin.url_v3}/origdatablocks",
        json=body,
        headers={"Authorization": f"Bearer {admin_token(standin)}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text

    # Touched after ingestion; deleted after ingestion.
    stat = files["touched"].stat()
    os.utime(files["touched"], (stat.st_atime + 60, stat.st_mtime + 60))
    files["deleted"].unlink()

    # failed: permanent error in a real worker (proposal unknown to SciCat).
    worker = start_worker(config)
    assert ingestor_cli("enqueue", "-c", str(config), str(files["failed"])).returncode == 0
    store = JobStore.from_url(redis_server.url)
    wait_for(lambda: len(store.failures()) == 1, what="the failed file")

    # running: the worker dies (SIGKILL) while its post-dataset step is being retried.
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", reset_connection=True, times=None))
    assert ingestor_cli("enqueue", "-c", str(config), str(files["running"])).returncode == 0
    wait_for(
        lambda: any(m == "POST" and p.endswith("/datasets") and s == 0 for m, p, s in standin.requests),
        what="the reset dataset POST",
    )
    worker.kill()
    standin.clear_faults()

    # queued: enqueued while no worker runs.
    assert ingestor_cli("enqueue", "-c", str(config), str(files["queued"])).returncode == 0

    requests_before = len(standin.requests)
    code, classes, lines = audit(config)
    assert standin.requests[requests_before:] and all(
        method == "GET" or path.endswith("/auth/login")
        for method, path, _ in standin.requests[requests_before:]
    ), "a dry audit writes nothing"
    assert code == 1
    orphan = "orphan:deleted.hdf"
    assert classes == {
        "ok.hdf": "ingested",
        "nofiles.hdf": "no-files",
        "totals.hdf": "totals-mismatch",
        "dup.hdf": "duplicate-blocks",
        "touched.hdf": "changed-on-disk",
        "missing.hdf": "missing",
        "queued.hdf": "queued",
        "running.hdf": "running",
        "failed.hdf": "failed",
        "notes.txt": "unselectable",
        orphan: "orphan",
    }, lines
    orphan_line = next(line for line in lines if line["class"] == "orphan")
    assert orphan_line["file"] == str(files["deleted"])
    assert orphan_line["admin"] == [
        f'curl -X DELETE -H "Authorization: Bearer $SCICAT_TOKEN" '
        f"'{standin.url_v3}/datasets/{by_file['deleted.hdf'].replace('/', '%2F')}'"
    ]
    dup_line = next(line for line in lines if line.get("class") == "duplicate-blocks")
    assert len(dup_line["block_ids"]) == 2 and "origdatablocks/" in dup_line["admin"][0]

    # The operator fixes the cause of the failure, then lets the audit enqueue and repair.
    standin.add_proposal(
        {"proposalId": "999999", "pi_firstname": "Ada", "pi_lastname": "B", "pi_email": "ada@ess.example"}
    )
    start_worker(config)
    datasets_before = set(standin.datasets)
    result = ingestor_cli("audit", "-c", str(config), "--enqueue-missing", "--repair")
    assert result.returncode == 1, result.stderr
    assert "patch " in result.stdout and "requeue " in result.stdout, result.stdout
    want = {"ok.hdf", "nofiles.hdf", "totals.hdf", "missing.hdf", "queued.hdf", "running.hdf", "failed.hdf"}

    last: dict[str, str] = {}

    def settled() -> bool:
        last.update(audit(config)[1])
        return all(last.get(name) == "ingested" for name in want)

    try:
        wait_for(settled, timeout=90, what="every repairable file ingested", every=1.0)
    except AssertionError:
        raise AssertionError(f"not settled: {last}; repair said: {result.stdout}") from None
    code, classes, _ = audit(config)
    assert code == 1
    assert {name: cls for name, cls in classes.items() if cls != "ingested"} == {
        "dup.hdf": "duplicate-blocks",  # needs an admin: DELETE the later block
        "touched.hdf": "changed-on-disk",  # needs a decision: the file changed after ingestion
        "notes.txt": "unselectable",
        orphan: "orphan",  # needs an admin: DELETE the dataset
    }
    new = set(standin.datasets) - datasets_before
    assert len(new) == 4  # missing, queued, running, failed: one dataset each, no duplicate
    assert all(len(_blocks_of(standin, pid)) == 1 for pid in new)


def _pids_by_file(standin: Any) -> dict[str, str]:
    return {
        Path(block["dataFileList"][0]["path"]).name: block["datasetId"] for block in standin.origdatablocks
    }


def _blocks_of(standin: Any, pid: str) -> list[dict[str, Any]]:
    return [block for block in standin.origdatablocks if block["datasetId"] == pid]

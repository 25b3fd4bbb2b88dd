"""``requeue`` keeps the producer's job id (issue 28, item 3).

With ``dataset.generate_dataset_pid`` the pid is derived from the file writer's job id; a
requeue that lost it would derive the pid from the path and create a second dataset.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers import ingestor_cli, wait_for, ymir_file
from offline_ingestor.ingest.steps import PID_NAMESPACE
from offline_ingestor.testing import Fault

pytestmark = [pytest.mark.redis, pytest.mark.worker]

JOB_ID = "fw-job-requeue-1"


def failures(config: Path) -> list[dict[str, Any]]:
    result = ingestor_cli("failed", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_requeue_after_the_dataset_exists_keeps_the_job_ids_pid(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """Failed after post-dataset, requeued: one dataset, the pid derived from the job id."""
    # Given a worker deriving pids, and a SciCat that refuses the file's origdatablock
    config = queue_config(dataset={"generate_dataset_pid": True})
    standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", status=400, times=None))
    start_worker(config)
    path = ymir_file(data_root)
    result = ingestor_cli("enqueue", "-c", str(config), "--job-id", JOB_ID, str(path))
    assert result.returncode == 0 and result.stdout.startswith("queued"), result.stdout + result.stderr
    found: list[dict[str, Any]] = []

    def registered() -> bool:
        found[:] = failures(config)
        return bool(found)

    wait_for(registered, timeout=90, what="the failed registry entry")
    (entry,) = found
    assert entry["step"] == "post-origdatablock", entry
    (pid,) = standin.datasets
    assert pid.endswith(str(uuid.uuid5(PID_NAMESPACE, JOB_ID))), pid
    # When SciCat is fixed and the file requeued
    standin.clear_faults()
    requeued = ingestor_cli("requeue", "-c", str(config), entry["key"])
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.startswith("queued"), requeued.stdout
    # Then its files are attached to that same dataset, and no second one is made
    wait_for(lambda: len(standin.origdatablocks) == 1, timeout=90, what="the origdatablock after requeue")
    assert list(standin.datasets) == [pid]
    (block,) = standin.origdatablocks
    assert block["datasetId"] == pid
    status = json.loads(ingestor_cli("status", "-c", str(config), "--json", entry["key"]).stdout)
    assert (status["state"], status["writer_job_id"], status["dataset_pid"]) == ("done", JOB_ID, pid)

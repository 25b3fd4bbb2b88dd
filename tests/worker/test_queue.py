"""The queue end to end: enqueue → real worker (prefork) → SciCat stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import ingestor_cli, wait_for, ymir_file
from offline_ingestor.ingest.steps import WRITE_STEPS
from offline_ingestor.testing import Fault

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def blocks(standin: Any) -> int:
    return len(standin.origdatablocks)


def test_enqueued_file_is_ingested(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """A file enqueued from the CLI ends as one dataset and one origdatablock."""
    config = queue_config()
    start_worker(config)
    path = ymir_file(data_root)
    result = ingestor_cli("enqueue", "-c", str(config), str(path))
    assert result.returncode == 0 and result.stdout.startswith("queued"), result.stderr
    wait_for(lambda: blocks(standin) == 1, what="the origdatablock")
    status = json.loads(ingestor_cli("status", "-c", str(config), "--json", str(path)).stdout)
    assert status["state"] == "done" and status["dataset_pid"] in standin.datasets


def test_duplicate_enqueue_makes_one_dataset(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """Enqueueing a file twice (before and after it is done) ingests it once."""
    config = queue_config()
    path = ymir_file(data_root)
    first = ingestor_cli("enqueue", "-c", str(config), str(path))
    second = ingestor_cli("enqueue", "-c", str(config), str(path))
    assert second.stdout.startswith("already queued"), second.stdout
    start_worker(config)
    wait_for(lambda: blocks(standin) == 1, what="the origdatablock")
    third = ingestor_cli("enqueue", "-c", str(config), str(path))
    assert first.returncode == second.returncode == third.returncode == 0
    assert third.stdout.startswith("already done")
    assert len(standin.datasets) == 1 and blocks(standin) == 1


def test_paths_from_stdin_and_python_api(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """Paths piped on stdin and offline_ingestor.enqueue() both queue files."""
    import offline_ingestor
    from offline_ingestor.config import load_config

    config = queue_config()
    start_worker(config)
    piped = [ymir_file(data_root, name=f"p{index}.hdf") for index in range(3)]
    result = ingestor_cli("enqueue", "-c", str(config), stdin="\n".join(map(str, piped)))
    assert result.stdout.count("queued") == 3, result.stderr
    outcome = offline_ingestor.enqueue(
        ymir_file(data_root, name="api.hdf"), job_id="fw-job-1", config=load_config(config)
    )
    assert outcome.queued and outcome.key == "fw-job-1"
    wait_for(lambda: blocks(standin) == 4, what="four origdatablocks")


def test_400_goes_to_failed_registry_then_requeue(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """A 400 fails at once into the registry with SciCat's words; requeue after the fix ingests."""
    config = queue_config()
    body = {"message": ["contactEmail must be an email"], "error": "Bad Request", "statusCode": 400}
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=400, body=body, times=None))
    start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    failed: list[dict[str, Any]] = []

    def registered() -> bool:
        failed[:] = json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout)
        return bool(failed)

    wait_for(registered, what="the failed registry entry")
    (entry,) = failed
    assert entry["step"] == "post-dataset" and entry["error_class"] == "ScicatRejected"
    assert "contactEmail must be an email" in entry["message"] and entry["file"] == str(path)
    assert entry["attempts"] == 1
    # When the cause is fixed and the file requeued
    standin.clear_faults()
    result = ingestor_cli("requeue", "-c", str(config), entry["key"])
    assert result.returncode == 0 and result.stdout.startswith("queued"), result.stdout + result.stderr
    wait_for(lambda: blocks(standin) == 1, what="the origdatablock after requeue")
    assert json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout) == []


def _only_key(config: Path) -> str:
    from offline_ingestor.config import load_config
    from offline_ingestor.queue.job_store import JobStore

    (record,) = JobStore.for_config(load_config(str(config))).records()
    return record.key


def test_whole_worker_killed_then_restarted(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """SIGKILL of the whole worker mid-POST; a new worker finishes after the visibility timeout."""
    config = queue_config()
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", delay_s=2.0, times=1, after_handling=True))
    worker = start_worker(config, concurrency=1)
    ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    wait_for(
        lambda: any(m == "GET" and "/datasets/" in p for m, p, _ in standin.requests),
        what="post-dataset to start",
    )
    worker.kill()
    start_worker(config, concurrency=1)
    wait_for(lambda: blocks(standin) == 1, timeout=90, what="the origdatablock after restart")
    assert len(standin.datasets) == 1 and blocks(standin) == 1


def test_enqueue_without_redis_fails_loudly(queue_config: Any, redis_server: Any, data_root: Path) -> None:
    """With Redis down, enqueue exits non-zero (75) and says it cannot reach Redis."""
    config = queue_config()
    redis_server.stop()
    result = ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    assert result.returncode == 75
    assert "cannot reach Redis" in result.stderr


def test_drop_in_command_enqueues_when_the_queue_is_enabled(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """The ESS command line with queue.enabled enqueues (job id from the message file), exit 0."""
    import subprocess
    import sys

    config = queue_config()
    path = ymir_file(data_root)
    message = data_root / "ingestor" / "run.message.json"  # inside the data roots, as upstream writes it
    message.parent.mkdir()
    message.write_text(json.dumps({"job_id": "wrdn-1234", "file_name": str(path)}))
    command = [
        str(Path(sys.executable).parent / "scicat_background_ingestor"),
        "-c",
        str(config),
        "--nexus-file",
        str(path),
        "--done-writing-message-file",
        str(message),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "queued: wrdn-1234"
    assert not standin.datasets  # nothing ingested in the caller's process
    start_worker(config)
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the origdatablock")
    status = json.loads(ingestor_cli("status", "-c", str(config), "--json", "wrdn-1234").stdout)
    assert status["state"] == "done" and status["writer_job_id"] == "wrdn-1234"
    (block,) = standin.origdatablocks
    assert str(message) in [entry["path"] for entry in block["dataFileList"]]


def test_worker_honours_ingestion_dry_run(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """With ingestion.dry_run the worker runs the chain and writes nothing to SciCat."""
    config = queue_config(ingestion={"dry_run": True})
    worker = start_worker(config)
    ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    writes = len(WRITE_STEPS)  # post-dataset, post-origdatablock, post-job
    wait_for(lambda: worker.log.read_text().count('"step.dry_run"') == writes, what="every write skipped")
    wait_for(lambda: '"ingest.finished"' in worker.log.read_text(), what="the file finished")
    assert worker.log.read_text().count('"step.dry_run"') == writes
    assert not standin.datasets and not standin.origdatablocks
    assert not any(method == "POST" and "login" not in path for method, path, _ in standin.requests)

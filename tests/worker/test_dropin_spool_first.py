"""The drop-in's fast path (dropin/fast.py): with a spool and a local worker polling it, the
spawned process only writes the request to the spool; the worker enqueues it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import cli, ingestor_cli, wait_for, ymir_file
from offline_ingestor.config import load_config
from offline_ingestor.queue.broker_identity import broker_identity
from offline_ingestor.queue.spool import Spool
from offline_ingestor.testing import scenario

pytestmark = [pytest.mark.redis, pytest.mark.worker]

HEAVY = ("celery", "kombu", "redis", "pydantic", "h5py", "numpy", "requests", "click", "structlog")


def drop_in(config: Path, path: Path, message: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``scicat_background_ingestor -c CONFIG --nexus-file FILE``, as the online ingestor spawns it."""
    extra = ["--done-writing-message-file", str(message)] if message else []
    return cli("scicat_background_ingestor", "-c", str(config), "--nexus-file", str(path), *extra)


def handed_over(result: subprocess.CompletedProcess[str]) -> bool:
    """Whether the call took the fast path (spooled for the local worker)."""
    return result.returncode == 0 and "the local worker enqueues it" in result.stdout


@pytest.fixture
def spool_config(queue_config: Any, tmp_path: Path) -> Path:
    """A queue config with a spool (relative to the config file, as operators may write it)."""
    config = queue_config(queue={"spool_dir": "spool"})
    assert load_config(config).resolve("spool") == tmp_path / "spool"
    return config


def accept(config: Path, data_root: Path) -> None:
    """The first call after a config change: validated in full, enqueued directly, recorded."""
    first = drop_in(config, ymir_file(data_root, name="first.hdf"))
    assert first.returncode == 0 and first.stdout.startswith("queued: "), first.stdout + first.stderr


def test_fast_path_imports_no_heavy_package(
    redis_server: Any, spool_config: Path, data_root: Path, tmp_path: Path
) -> None:
    """The handed-over call imports none of Celery, kombu, redis-py, pydantic, h5py, requests."""
    # Given an accepted config and a worker polling the spool (its mark, made here)
    accept(spool_config, data_root)
    Spool(tmp_path / "spool").mark_flusher(broker_identity(load_config(spool_config).queue))
    path = ymir_file(data_root, name="run-0002.hdf")
    # When the drop-in runs in a process that reports what it imported
    probe = (
        "import json, sys\n"
        "from offline_ingestor.background_ingestor import main\n"
        f"sys.argv = ['scicat_background_ingestor', '-c', {str(spool_config)!r}, "
        f"'--nexus-file', {str(path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    env = {**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": scenario.INGESTOR_PASSWORD}  # as cli() runs it
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    # Then it handed the request over, having imported none of them
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, result.stdout + result.stderr
    assert "the local worker enqueues it" in result.stdout
    assert Spool(tmp_path / "spool").count() == 1


def test_spooled_request_is_ingested_exactly_once(
    standin: Any, start_worker: Any, spool_config: Path, data_root: Path, tmp_path: Path
) -> None:
    """A file handed over twice by the fast path is ingested once by the worker's flusher."""
    # Given a worker polling the spool and an accepted config
    worker = start_worker(spool_config)
    accept(spool_config, data_root)
    path = ymir_file(data_root, name="run-0002.hdf")
    # When the online ingestor spawns the drop-in for the file, twice
    first, second = drop_in(spool_config, path), drop_in(spool_config, path)
    # Then both exit 0 through the spool, and the worker ingests the file once
    assert handed_over(first) and handed_over(second), first.stdout + first.stderr
    wait_for(lambda: len(standin.origdatablocks) == 2, what="both files' origdatablocks")
    wait_for(lambda: Spool(tmp_path / "spool").count() == 0, what="the spool to be flushed")
    status = json.loads(ingestor_cli("status", "-c", str(spool_config), "--json", str(path)).stdout)
    assert status["state"] == "done"
    assert len(standin.datasets) == 2 and len(standin.origdatablocks) == 2
    # ... and its log says, per request, what the drop-in could not: queued, then a no-op
    sent = [
        event["status"]
        for event in (
            json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")
        )
        if event.get("event") == "spool.sent" and event.get("file") == str(path)
    ]
    assert sent[0] == "queued" and sent[1].startswith("already "), sent


def test_cheap_refusals_keep_their_exit_status_and_line(
    standin: Any, start_worker: Any, spool_config: Path, data_root: Path, tmp_path: Path
) -> None:
    """Missing file, writer's error, file outside the roots: exit 1, one line, nothing spooled."""
    start_worker(spool_config)
    accept(spool_config, data_root)
    missing = data_root / "ess/raw/ymir/2024/876380/missing.hdf"
    broken = ymir_file(data_root, name="broken.hdf")
    message = data_root / "ingestor" / "broken.message.json"
    # The worker may have made this folder already, for the accepted file's hash file.
    message.parent.mkdir(exist_ok=True)
    message.write_text(json.dumps(["kafka-to-nexus", "job-9", True, str(broken), None, "disk full"]))
    outside = tmp_path / "outside.hdf"
    outside.write_bytes(broken.read_bytes())
    cases = {
        "does not exist": drop_in(spool_config, missing),
        "disk full": drop_in(spool_config, broken, message),
        "outside the allowed data roots": drop_in(spool_config, outside),
    }
    for expected, result in cases.items():
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith("error: refused: ") and expected in lines[0]
    assert Spool(tmp_path / "spool").count() == 0 and not list((tmp_path / "spool").glob("*.json"))


def test_bad_file_handed_over_ends_in_the_failed_registry(
    standin: Any, start_worker: Any, spool_config: Path, data_root: Path
) -> None:
    """What only the worker can check (not HDF5) is reported there, naming the file."""
    start_worker(spool_config)
    accept(spool_config, data_root)
    bad = data_root / "ess/raw/ymir/2024/876380/bad.hdf"
    bad.write_text("not hdf5")
    assert handed_over(drop_in(spool_config, bad))
    failed: list[dict[str, Any]] = []

    def registered() -> bool:
        failed[:] = json.loads(ingestor_cli("failed", "-c", str(spool_config), "--json").stdout)
        return bool(failed)

    wait_for(registered, what="the bad file in the failed registry")
    (entry,) = failed
    assert entry["file"] == str(bad) and "not an HDF5 file" in entry["message"]


def test_edited_or_broken_config_is_validated_again(
    standin: Any, start_worker: Any, spool_config: Path, data_root: Path
) -> None:
    """An edited config takes the slow path once; a broken one still fails with its key."""
    start_worker(spool_config)
    accept(spool_config, data_root)
    assert handed_over(drop_in(spool_config, ymir_file(data_root, name="a.hdf")))
    text = spool_config.read_text()
    spool_config.write_text(text + "# edited\n")
    assert drop_in(spool_config, ymir_file(data_root, name="b.hdf")).stdout.startswith("queued: ")
    assert handed_over(drop_in(spool_config, ymir_file(data_root, name="c.hdf")))
    spool_config.write_text(text.replace("  concurrency: 2\n", "  concurrency: zero\n"))
    broken = drop_in(spool_config, ymir_file(data_root, name="d.hdf"))
    assert broken.returncode == 1 and "queue.concurrency" in broken.stderr.strip().splitlines()[-1]


def test_without_a_polling_worker_the_drop_in_enqueues_itself(
    standin: Any, start_worker: Any, spool_config: Path, data_root: Path, tmp_path: Path
) -> None:
    """A stopped worker flushes nothing: the drop-in then claims and publishes in Redis itself."""
    worker = start_worker(spool_config)
    accept(spool_config, data_root)
    worker.stop()
    result = drop_in(spool_config, ymir_file(data_root, name="run-0002.hdf"))
    assert result.returncode == 0 and result.stdout.startswith("queued: "), result.stdout + result.stderr
    assert Spool(tmp_path / "spool").count() == 0

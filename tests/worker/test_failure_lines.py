"""An expected per-file failure is one log line at error level: ours, not Celery's as well.

A real worker gets a file that is not HDF5 (refused at a step: InputFileError) and a
``offline_ingestor.submit`` for a path outside the data roots (refused at submit). Each
must leave exactly one error/warning line naming it, and no Celery "raised unexpected" line
with its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import ingestor_cli, wait_for
from offline_ingestor.config import load_config
from offline_ingestor.worker.app import app_for

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def failed_keys(config: Path) -> list[str]:
    out = ingestor_cli("failed", "--json", "-c", str(config))
    return [entry["key"] for entry in json.loads(out.stdout or "[]")]


def test_an_expected_failure_is_logged_once(
    start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    config = queue_config(logging={"format": "json"})
    worker = start_worker(config)
    bad = data_root / "not-hdf5.hdf"
    bad.write_bytes(b"this is not an HDF5 file\n" * 100)
    assert ingestor_cli("enqueue", "-c", str(config), str(bad)).returncode == 0
    app_for(load_config(config)).send_task(
        "offline_ingestor.submit", args=["/etc/hostname"], kwargs={"job_id": "outside-1"}, queue="ingest"
    )
    wait_for(lambda: len(failed_keys(config)) == 2, 60, "both files in the failed registry")
    worker.stop()

    events = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    loud = [event for event in events if event.get("level") in ("error", "critical", "warning")]
    about_bad = [event for event in loud if "not-hdf5" in json.dumps(event)]
    about_outside = [event for event in loud if "/etc/hostname" in json.dumps(event)]
    assert [event["event"] for event in about_bad] == ["ingest.failed"], about_bad
    assert [event["event"] for event in about_outside] == ["submit.refused"], about_outside
    text = worker.log.read_text()
    assert "raised unexpected" not in text and "raised expected" not in text
    assert not any("exception" in event for event in events), "a traceback was logged"

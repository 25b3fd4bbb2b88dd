"""Hostile files through the real worker (issue 12, item 1): the outside value never reaches SciCat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import ingestor_cli, linked_out_of_the_root, string_vds_file, wait_for, ymir_file

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_external_link_out_of_the_root_goes_to_the_failed_registry(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    # Given a file in the root whose title is an external link to a file outside it
    path = linked_out_of_the_root(data_root, tmp_path / "outside.h5")
    config = queue_config()
    start_worker(config)
    # When it is enqueued
    ingestor_cli("enqueue", "-c", str(config), str(path))
    failed: list[dict[str, Any]] = []

    def registered() -> bool:
        failed[:] = json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout)
        return bool(failed) or bool(standin.datasets)

    wait_for(registered, what="the failed registry entry (or a dataset)")
    # Then it fails at extract, once, naming the refusal; SciCat holds nothing
    assert not standin.datasets
    (entry,) = failed
    assert entry["step"] == "extract" and entry["error_class"] == "NexusReadError"
    assert "outside the allowed data roots: refused" in entry["message"]
    assert entry["attempts"] == 1


def test_a_file_that_kills_its_process_every_time_fails_as_worker_lost(
    standin: Any,
    start_worker: Any,
    queue_config: Any,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libhdf5 crashes the pool process at every try: after the cap, WorkerLost; others go on."""
    # Given a worker whose in-process guard is off, so this file's string VDS segfaults libhdf5
    monkeypatch.setenv("OFFLINE_INGESTOR_UNSAFE_VDS", "1")
    config = queue_config()  # queue.max_redeliveries: 2
    worker = start_worker(config)
    crasher = string_vds_file(data_root)

    def failures() -> list[dict[str, Any]]:
        return list(json.loads(ingestor_cli("failed", "-c", str(config), "--json").stdout))

    def extract_starts() -> int:
        """Executions of extract begun for the crashing file (each ends with its process)."""
        lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
        return sum(
            1
            for e in lines
            if e.get("event") == "step.started"
            and e.get("step") == "extract"
            and e.get("file") == str(crasher)
        )

    # When it is enqueued
    ingestor_cli("enqueue", "-c", str(config), str(crasher))
    wait_for(lambda: bool(failures()), timeout=90, what="the crashing file in the failed registry")
    # Then it is failed as WorkerLost at extract after max_redeliveries + 1 executions
    (entry,) = failures()
    assert (entry["error_class"], entry["step"], entry["attempts"]) == ("WorkerLost", "extract", 4)
    assert extract_starts() == 3
    # And the lease is free and other files go on
    good = ymir_file(data_root, name="good.hdf")
    ingestor_cli("enqueue", "-c", str(config), str(good))
    wait_for(lambda: len(standin.origdatablocks) == 1, timeout=60, what="the good file")
    # And a requeue counts afresh: three more executions before it fails again
    assert ingestor_cli("requeue", "-c", str(config), entry["key"]).returncode == 0
    wait_for(lambda: extract_starts() == 6 and bool(failures()), timeout=90, what="the requeued file")
    (again,) = failures()
    assert (again["error_class"], again["attempts"]) == ("WorkerLost", 4)

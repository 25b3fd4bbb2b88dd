"""The SciCat write steps on their own queue, served by ``worker --io`` (a thread pool)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import ingestor_cli, wait_for, ymir_file
from offline_ingestor.testing.processes import WorkerProcess
from offline_ingestor.testing.pytest_plugin import ingestor_env


class IoWorker(WorkerProcess):
    def worker_args(self) -> list[str]:
        command, *rest = super().worker_args()
        return [command, "--io", *rest]


def steps_in(log: Path) -> set[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return {line["step"] for line in lines if line.get("event") == "step.done"}


def test_write_steps_run_on_the_io_worker(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """Local steps on the prefork worker, both POSTs on the thread pool; every file done once."""
    config = queue_config(queue={"io_queue_name": "ingest-io", "io_concurrency": 4})
    prefork = start_worker(config, concurrency=1)
    io = IoWorker(config, tmp_path / "io.log", tmp_path / "heartbeat", 4, env=ingestor_env()).start()
    try:
        paths = [
            ymir_file(data_root, f"run-{n}.hdf", job_id=f"0b1e7c4e-0000-4000-8000-00000000010{n}")
            for n in range(3)
        ]
        result = ingestor_cli("enqueue", "-c", str(config), *map(str, paths))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: len(standin.origdatablocks) == 3, what="three origdatablocks")
        wait_for(lambda: '"ingest.finished"' in io.log.read_text(), what="the io worker's log")
    finally:
        io.stop()
    assert len(standin.datasets) == 3
    assert steps_in(prefork.log) == {"select-schema", "extract", "build-dataset"}
    assert steps_in(io.log) == {"post-dataset", "post-origdatablock", "post-job"}

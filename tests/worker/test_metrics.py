"""Worker observability: Prometheus scrape, heartbeat liveness, structured logs."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ymir_file
from offline_ingestor.testing import Fault
from worker.conftest import cli, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_scrape_reads_ingest_metrics(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """A scrape of the worker shows files ingested/failed per schema, retries, steps, queue depth."""
    port = free_port()
    config = queue_config(queue={"metrics_port": port})
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=503, times=1))
    start_worker(config)
    cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    bad = data_root / "bad.hdf"
    bad.write_text("not hdf5")
    cli("enqueue", "-c", str(config), str(bad))
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the good file")
    ymir = "3d0c1f5e-ymir-offline-ingestor"

    def counted() -> bool:
        samples = scrape(port)
        return (
            samples.get(("offline_ingestor_files_total", (("outcome", "failed"), ("schema", "unknown")))) == 1.0
            and samples.get(("offline_ingestor_files_total", (("outcome", "created"), ("schema", ymir)))) == 1.0
        )

    wait_for(counted, what="the file counters in a scrape")
    samples = scrape(port)
    assert samples[("offline_ingestor_retries_total", (("step", "post-dataset"),))] == 1.0
    assert samples[("offline_ingestor_step_seconds_count", (("step", "extract"),))] == 1.0
    assert samples[("offline_ingestor_queue_depth", (("queue", "ingest"),))] == 0.0
    assert samples[("offline_ingestor_failed_files", ())] == 1.0


def test_heartbeat_liveness_and_step_logs(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """health --liveness passes while the worker runs; each step logs one JSON event."""
    config = queue_config()
    worker = start_worker(config)
    assert cli("health", "-c", str(config), "--liveness").returncode == 0
    cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the origdatablock")
    wait_for(lambda: "ingest.finished" in worker.log.read_text(), what="the summary line")
    events = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    steps = [event for event in events if event["event"] == "step.done"]
    assert [event["step"] for event in steps] == [
        "select-schema",
        "extract",
        "build-dataset",
        "post-dataset",
        "post-origdatablock",
    ]
    for event in steps:
        assert {"file", "job_id", "step", "pid", "attempt", "duration_ms", "process", "task_id"} <= set(event)
    (summary,) = [event for event in events if event["event"] == "ingest.finished"]
    assert summary["pid"] in standin.datasets
    worker.kill()
    result = cli("health", "-c", str(config), "--liveness", "--max-age", "0")
    assert result.returncode == 1 and "DEAD" in result.stdout

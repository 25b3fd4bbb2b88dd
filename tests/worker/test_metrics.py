"""Worker observability: Prometheus scrape, heartbeat liveness, structured logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ingestor_cli, wait_for, ymir_file
from monitoring_queries import unknown_metrics
from offline_ingestor.testing import Fault

pytestmark = [pytest.mark.redis, pytest.mark.worker]
YMIR = "3d0c1f5e-ymir-offline-ingestor"
#: The ``schema`` label is the schema's name, ``schema_id`` its id.
YMIR_LABELS = (("schema", "ESS YMIR raw data"), ("schema_id", YMIR))
UNKNOWN_LABELS = (("schema", "unknown"), ("schema_id", "unknown"))
FILES = "offline_ingestor_files_total"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exposition(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exposition(port)
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
    # Short liveness timings: the reconciler's gauges appear after its first pass.
    liveness = {"heartbeat_interval_s": 0.3, "heartbeat_ttl_s": 1.5, "reconcile_interval_s": 0.5}
    config = queue_config(queue={"metrics_port": port, **liveness})
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=503, times=1))
    start_worker(config)
    # Every series known at start is there at 0 before any event (alerts see 0, not "no data").
    initial = scrape(port)
    for step in (
        "select-schema",
        "extract",
        "build-dataset",
        "post-dataset",
        "post-origdatablock",
        "post-job",
    ):
        assert initial[("offline_ingestor_retries_total", (("step", step),))] == 0.0
        assert initial[("offline_ingestor_step_seconds_count", (("step", step),))] == 0.0
    for outcome in ("created", "duplicate", "failed", "refused"):
        assert initial[("offline_ingestor_files_total", (("outcome", outcome), *YMIR_LABELS))] == 0.0
    for kind in ("job", "sample"):
        for made in ("created", "found"):
            assert (
                initial[("offline_ingestor_scicat_objects_total", (("kind", kind), ("outcome", made)))] == 0.0
            )
    assert initial[("offline_ingestor_scicat_errors_total", (("kind", "server"),))] == 0.0
    assert initial[("offline_ingestor_pool_processes", ())] == 2.0
    ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    bad = data_root / "bad.hdf"
    bad.write_text("not hdf5")
    ingestor_cli("enqueue", "-c", str(config), str(bad))
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the good file")

    def counted() -> bool:
        samples = scrape(port)
        return (
            samples.get((FILES, (("outcome", "failed"), *UNKNOWN_LABELS))) == 1.0
            and samples.get((FILES, (("outcome", "created"), *YMIR_LABELS))) == 1.0
        )

    wait_for(counted, what="the file counters in a scrape")
    samples = scrape(port)
    assert samples[("offline_ingestor_retries_total", (("step", "post-dataset"),))] == 1.0
    assert samples[("offline_ingestor_step_seconds_count", (("step", "extract"),))] == 1.0
    assert samples[("offline_ingestor_queue_depth", (("queue", "ingest"),))] == 0.0
    assert samples[("offline_ingestor_failed_files", ())] == 1.0
    assert samples[("offline_ingestor_queue_oldest_age_seconds", (("queue", "ingest"),))] == 0.0
    assert samples[("offline_ingestor_redis_up", ())] == 1.0
    assert ("offline_ingestor_worker_process_resident_memory_bytes", ()) in samples
    assert samples[("offline_ingestor_heartbeat_age_seconds", ())] >= 0.0
    # Every metric the shipped dashboard and alert rules query is exported (the reconciler's
    # two gauges once it made its first pass: before it, "no data", as for any new target).
    wait_for(lambda: "offline_ingestor_stuck_files" in exposition(port), what="the reconciler's first pass")
    assert unknown_metrics(exposition(port)) == []


def test_heartbeat_liveness_and_step_logs(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """health --liveness passes while the worker runs; each step logs one JSON event."""
    config = queue_config()
    worker = start_worker(config)
    assert ingestor_cli("health", "-c", str(config), "--liveness").returncode == 0
    ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
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
        "post-job",
    ]
    for event in steps:
        assert {"file", "key", "step", "dataset_pid", "attempt", "duration_ms", "process", "task_id"} <= set(
            event
        )
    (summary,) = [event for event in events if event["event"] == "ingest.finished"]
    assert summary["dataset_pid"] in standin.datasets
    worker.kill()
    result = ingestor_cli("health", "-c", str(config), "--liveness", "--max-age", "0")
    assert result.returncode == 1 and "DEAD" in result.stdout


def _worker(tmp_path: Path, config: Path, name: str, **env: str) -> Any:
    from offline_ingestor.testing.processes import WorkerProcess

    return WorkerProcess(
        config,
        tmp_path / f"{name}.log",
        tmp_path / "heartbeat",
        env={**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw", **env},
    )


@pytest.mark.parametrize("case", ["missing", "impossible"])
def test_metrics_folder_problems_never_stop_ingestion(
    case: str, standin: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """PROMETHEUS_MULTIPROC_DIR names a folder that does not exist (it is created) or one
    that cannot exist (metrics are off, with one warning): the file is ingested either way."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = tmp_path / "new" / "metrics" if case == "missing" else blocker / "metrics"
    port = free_port()
    config = queue_config(queue={"metrics_port": port})
    worker = _worker(tmp_path, config, case, PROMETHEUS_MULTIPROC_DIR=str(folder))
    try:
        worker.start()
        ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
        wait_for(lambda: len(standin.origdatablocks) == 1, what="the file")
        wait_for(lambda: "ingest.finished" in worker.log.read_text(), what="the summary line")
        if case == "missing":
            assert folder.is_dir()
            files = ("offline_ingestor_files_total", (("outcome", "created"), *YMIR_LABELS))
            wait_for(lambda: scrape(port).get(files) == 1.0, what="the file counted")
    finally:
        worker.stop()
    warnings = [line for line in worker.log.read_text().splitlines() if "metrics.disabled" in line]
    assert len(warnings) == (0 if case == "missing" else 1), warnings
    assert "ingest.failed" not in worker.log.read_text()


def test_metrics_temp_folders_are_removed(
    standin: Any, queue_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the worker's own oi-metrics-* folder goes when it
    stops, and folders left by workers that are gone (SIGKILL) are removed at start."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = temp / f"oi-metrics-{dead.pid}-leftover"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"\0" * 8)
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    worker = _worker(tmp_path, queue_config(), "temp", TMPDIR=str(temp))
    worker.env = {**env, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw", "TMPDIR": str(temp)}
    try:
        worker.start()
        assert not stale.exists()
        (own,) = list(temp.glob("oi-metrics-*"))
    finally:
        worker.stop()
    assert not own.exists()


def test_failure_counted_with_the_selected_schema(
    standin: Any, start_worker: Any, queue_config: Any, data_root: Path
) -> None:
    """A file whose schema was selected and that SciCat then refuses (400) is counted
    as failed under that schema, not under "unknown"."""
    port = free_port()
    config = queue_config(queue={"metrics_port": port})
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=400, times=None))
    start_worker(config)
    ingestor_cli("enqueue", "-c", str(config), str(ymir_file(data_root)))
    failed = ("offline_ingestor_files_total", (("outcome", "failed"), *YMIR_LABELS))
    wait_for(lambda: scrape(port).get(failed) == 1.0, timeout=30, what="the failure under its schema")

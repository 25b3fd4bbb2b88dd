"""``offline-ingestor audit`` without a queue: identity, checksums, checkpoint, gauges.

The classes produced with Redis and workers are in ``tests/worker/test_audit_classes.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from helpers import cli, write_config, ymir_file


def _audit(config: Path, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = cli("offline-ingestor", "audit", "--no-redis", "--json", *args, config=config)
    assert result.returncode in (0, 1), result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, {Path(line["file"]).name: line for line in lines if "class" in line}


def _ingest(config: Path, path: Path) -> None:
    result = cli("offline-ingestor", "ingest-now", str(path), config=config)
    assert result.returncode == 0, result.stderr


def test_derived_pids_are_found_as_ingestion_derives_them(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """generate_dataset_pid: the audit's pid is the one ingestion sent (not the schema's)."""
    config = write_config(tmp_path / "c.yml", standin, data_root, dataset={"generate_dataset_pid": True})
    path = ymir_file(data_root)
    _ingest(config, path)
    code, found = _audit(config)
    assert (code, found["run-0001.hdf"]["class"]) == (0, "ingested")
    assert found["run-0001.hdf"]["pid"] == next(iter(standin.datasets))


def test_same_size_same_mtime_other_bytes_needs_checksums(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """A rewrite that keeps size and mtime is only seen with --checksums."""
    config = write_config(tmp_path / "c.yml", standin, data_root)
    path = ymir_file(data_root)
    _ingest(config, path)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # past the HDF5 superblock: still the same file to h5py
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _audit(config)[1]["run-0001.hdf"]["class"] == "ingested"
    code, found = _audit(config, "--checksums")
    assert (code, found["run-0001.hdf"]["class"]) == (1, "changed-on-disk")
    assert "checksum" in found["run-0001.hdf"]["reason"]


def test_checkpoint_resumes_without_asking_scicat_again(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yml", standin, data_root)
    paths = [ymir_file(data_root, f"run-{index}.hdf") for index in range(3)]
    for path in paths:
        _ingest(config, path)
    checkpoint = tmp_path / "audit.ckpt"
    first = _audit(config, "--checkpoint", str(checkpoint))
    assert first[0] == 0 and len(first[1]) == 3
    before = len(standin.requests)
    second = _audit(config, "--checkpoint", str(checkpoint))
    assert second == first
    blocks = [path for method, path, _ in standin.requests[before:] if path.endswith("/origdatablocks")]
    assert blocks == []  # finished files are not audited again


def test_metrics_file_has_a_gauge_per_class(standin: Any, data_root: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", standin, data_root)
    _ingest(config, ymir_file(data_root, "a.hdf"))
    ymir_file(data_root, "b.hdf")
    metrics = tmp_path / "audit.prom"
    result = cli("offline-ingestor", "audit", "--no-redis", "--metrics-file", str(metrics), config=config)
    assert result.returncode == 1, result.stderr
    text = metrics.read_text()
    assert 'offline_ingestor_audit_files{class="ingested"} 1.0' in text
    assert 'offline_ingestor_audit_files{class="missing"} 1.0' in text
    assert 'offline_ingestor_audit_files{class="orphan"} 0.0' in text
    assert "missing                   1" in result.stdout  # the summary table


def test_previous_audit_skips_unchanged_but_sees_a_changed_dataset(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """--previous: no block read for unchanged files; a block added since is still seen."""
    import requests

    config = write_config(tmp_path / "c.yml", standin, data_root)
    paths = [ymir_file(data_root, f"run-{index}.hdf") for index in range(3)]
    for path in paths:
        _ingest(config, path)
    first = cli("offline-ingestor", "audit", "--no-redis", "--json", config=config)
    previous = tmp_path / "first.jsonl"
    previous.write_text(first.stdout)
    block = next(b for b in standin.origdatablocks if b["dataFileList"][0]["path"].endswith("run-1.hdf"))
    body = {
        "datasetId": block["datasetId"],
        "size": block["size"],
        "dataFileList": [
            {k: v for k, v in f.items() if k not in ("_id", "id")} for f in block["dataFileList"]
        ],
    }
    token = standin.login_token("admin")
    answer = requests.post(
        f"{standin.url_v3}/origdatablocks",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 201
    before = len(standin.requests)
    code, found = _audit(config, "--previous", str(previous))
    assert code == 1
    assert {name: line["class"] for name, line in found.items()} == {
        "run-0.hdf": "ingested",
        "run-1.hdf": "duplicate-blocks",
        "run-2.hdf": "ingested",
    }
    blocks = [path for _, path, _ in standin.requests[before:] if path.endswith("/origdatablocks")]
    assert blocks == [f"/api/v3/datasets/{block['datasetId'].replace('/', '%2F')}/origdatablocks"]


def test_scicat_down_stops_the_audit_with_exit_75(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """A SciCat that cannot answer makes every class wrong: one line and exit 75, no table."""
    from offline_ingestor.testing import Fault

    config = write_config(tmp_path / "c.yml", standin, data_root, scicat={"max_retries": 0})
    ymir_file(data_root)
    standin.inject(Fault(method="GET", path_regex=r"/datasets$", status=503, times=None))
    result = cli("offline-ingestor", "audit", "--no-redis", config=config)
    assert result.returncode == 75, result.stderr
    assert "503" in result.stderr and "ingested" not in result.stdout


def test_repair_without_a_queue_attaches_the_block_in_process(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """queue.enabled false: a no-files dataset gets its block from an in-process chain."""
    from offline_ingestor.testing import Fault

    config = write_config(tmp_path / "c.yml", standin, data_root, scicat={"max_retries": 0})
    path = ymir_file(data_root)
    standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", reset_connection=True))
    assert cli("offline-ingestor", "ingest-now", str(path), config=config).returncode == 75
    assert _audit(config)[1]["run-0001.hdf"]["class"] == "no-files"
    result = cli("offline-ingestor", "audit", "--no-redis", "--repair", config=config)
    assert result.returncode == 1 and "ingest " in result.stdout, result.stdout + result.stderr
    code, found = _audit(config)
    assert (code, found["run-0001.hdf"]["class"]) == (0, "ingested")
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1

"""``ingest-now --dry-run`` and ``schemas explain`` show the sample and job payloads, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import ROOT, cli, write_config, ymir_file
from offline_ingestor.ingest.jobs import JOB_MARKER
from offline_ingestor.schema.samples import derived_sample_id

SECTIONS = """
sample_attachment:
  query_sample_name: true
  create_missing: true
scicat_job:
  type: ingest-followup
  job_params: {dataset: <dataset_pid>}
"""


def _config(standin: Any, data_root: Path, tmp_path: Path) -> Path:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "ymir.imsc.yml").write_text((ROOT / "schemas/ess-ymir.imsc.yml").read_text() + SECTIONS)
    return write_config(tmp_path / "c.yml", standin, data_root, ingestion={"schemas_directory": str(schemas)})


def test_dry_run_prints_the_sample_and_the_job(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """--dry-run prints the exact sample and job bodies beside the dataset's; SciCat stays empty."""
    config = _config(standin, data_root, tmp_path)
    result = cli("offline-ingestor", "ingest-now", "--dry-run", str(ymir_file(data_root)), "-c", str(config))
    assert result.returncode == 0, result.stderr
    payloads = json.loads(result.stdout)
    sample_id = derived_sample_id("876380", "A Sample")
    (sample,) = payloads["samples"]
    assert sample["sampleId"] == sample_id and payloads["dataset"]["sampleId"] == sample_id
    job = payloads["job"]
    assert job["type"] == "ingest-followup" and job["datasetList"] == [
        {"pid": payloads["dataset"]["pid"], "files": []}
    ]
    assert job["jobParams"]["dataset"] == payloads["dataset"]["pid"] and job["jobParams"][JOB_MARKER]
    assert not standin.datasets and not standin.samples and not standin.jobs


def test_explain_shows_the_sample_and_the_job(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """schemas explain --json lists the samples to create and the job post-job would send."""
    config = _config(standin, data_root, tmp_path)
    result = cli(
        "offline-ingestor", "schemas", "explain", "--json", str(ymir_file(data_root)), "-c", str(config)
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["samples"]["attached"] == [derived_sample_id("876380", "A Sample")]
    assert shown["samples"]["to_create"][0]["sampleName"] == "A Sample"
    assert shown["job"]["type"] == "ingest-followup"
    assert not standin.samples and not standin.jobs


def test_schema_errors_name_the_file_and_field(tmp_path: Path) -> None:
    """A template naming no variable, or a reserved job parameter, is one line naming file and field."""
    for section, expected in (
        (
            "scicat_job:\n  type: t\n  job_params: {x: <nope>}\n",
            "scicat_job.job_params.x: <nope> is not a variable",
        ),
        (
            "scicat_job:\n  type: t\n  job_params: {datasetList: []}\n",
            "scicat_job.job_params: datasetList is set by the ingestor",
        ),
        ("scicat_job:\n  job_params: {}\n", "scicat_job.type: Field required"),
        ("sample_attachment:\n  create_missing: true\n", "sample_attachment: create_missing needs"),
    ):
        folder = tmp_path / str(abs(hash(section)))
        folder.mkdir()
        text = (ROOT / "schemas/ess-ymir.imsc.yml").read_text() + section
        (folder / "ymir.imsc.yml").write_text(text)
        result = cli("offline-ingestor", "schemas", "check", str(folder))
        assert result.returncode == 1
        line = next(row for row in result.stdout.splitlines() if row.startswith("ERROR"))
        assert str(folder / "ymir.imsc.yml") in line and expected in line, line


def _audit(config: Path, *args: str) -> dict[str, dict[str, Any]]:
    result = cli("offline-ingestor", "audit", "--no-redis", "--json", *args, config=config)
    assert result.returncode in (0, 1), result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {Path(line["file"]).name: line for line in lines if "class" in line}


def test_audit_names_a_missing_job_and_repair_adds_only_it(
    standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """A whole dataset without its SciCat job is job-missing; --repair creates the job and nothing else."""
    config = _config(standin, data_root, tmp_path)
    path = ymir_file(data_root)
    standin.job_types.clear()  # the backend refuses the job: post-job fails, the dataset is whole
    assert cli("offline-ingestor", "ingest-now", str(path), config=config).returncode != 0
    assert _audit(config)["run-0001.hdf"]["class"] == "job-missing"
    standin.job_types.add("ingest-followup")
    result = cli("offline-ingestor", "audit", "--no-redis", "--repair", config=config)
    assert "(job-missing)" in result.stdout, result.stdout + result.stderr
    assert _audit(config)["run-0001.hdf"]["class"] == "ingested"
    assert (len(standin.datasets), len(standin.origdatablocks), len(standin.jobs)) == (1, 1, 1)


def test_audit_names_a_missing_sample(standin: Any, data_root: Path, tmp_path: Path) -> None:
    """A dataset naming a sample SciCat lost (deleted since) is sample-missing."""
    config = _config(standin, data_root, tmp_path)
    path = ymir_file(data_root)
    assert cli("offline-ingestor", "ingest-now", str(path), config=config).returncode == 0
    assert _audit(config)["run-0001.hdf"]["class"] == "ingested"
    standin._store.samples.clear()  # an admin deleted the sample
    assert _audit(config)["run-0001.hdf"]["class"] == "sample-missing"

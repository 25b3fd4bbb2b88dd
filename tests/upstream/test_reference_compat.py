"""Upstream's own schema files and real ESS files give the payloads those schemas define."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.runtime import Runtime

pytestmark = pytest.mark.reference

CODA_TEAM = (
    "Anders Pettersson, Fredrik Bolmsten, George ONeill, Jonas Petersson, Massimiliano Novelli, Matt Clarke"
)
YMIR_TEAM = (
    "Anders Pettersson, Fredrik Bolmsten, George ONeill, Janos Babik, Jekabs Karklins, Jonas Petersson, "
    "Junjie Quan, Massimiliano Novelli, Matt Clarke, Søren Schmidt, Tibor Bukovics, Yoganandan Pandiyan"
)
SIMS = ["scientific information management systems group"]


def sm(value: Any, type_: str, human: str) -> dict[str, Any]:
    return {"value": value, "type": type_, "human_name": human, "unit": ""}


@pytest.fixture
def upstream(reference: Path, tmp_path: Path, data_root: Path, standin: Any, make_config: Any) -> Any:
    """Upstream's small-coda/small-ymir schemas, the real files in an ESS tree, a config."""
    schemas = tmp_path / "upstream-schemas"
    schemas.mkdir()
    for name in ("small-coda", "small-ymir"):
        shutil.copy(
            reference / f"scicat-ingestor/resources/{name}.imsc.yml.example", schemas / f"{name}.imsc.yml"
        )
    files = {}
    for name, folder in (("small-coda", "coda/2024/443503"), ("small-ymir", "ymir/2024/876380")):
        target = data_root / "ess/raw" / folder / f"{name}.hdf"
        target.parent.mkdir(parents=True)
        shutil.copy(reference / f"scicat-ingestor/test-data/{name}.hdf", target)
        files[name] = target
    # The file handling of upstream's integration config, the mode that works upstream.
    config = make_config(
        standin,
        ingestion={
            "schemas_directory": str(schemas),
            "fallback_schema_file_path": "",
            "file_handling": {"file_path_type": "absolute", "save_file_hash": False},
        },
    )
    return config, files


def test_small_coda_payloads(upstream: Any, standin: Any) -> None:
    """small-coda.hdf with upstream's small-coda schema: every field as the schema defines it."""
    config, files = upstream
    path = files["small-coda"]
    before = dt.datetime.now(tz=dt.UTC)
    job = ingest(Runtime.from_config(config), new_job(path, config.ingestion.allowed_data_roots))
    after = dt.datetime.now(tz=dt.UTC)
    dataset = dict(job["dataset"])
    # <now> is the time of the extraction, in between.
    assert before <= dt.datetime.fromisoformat(dataset.pop("creationTime")) <= after
    assert dataset == {
        "pid": "20.500.12269/f22acb1c-950b-11ef-a3ef-fa163e9aae0a",
        "isPublished": False,
        "type": "raw",
        "techniques": [],
        "proposalId": "443503",
        "datasetName": "odin",
        "principalInvestigator": "Ada Lovelace",
        "owner": "Ada Lovelace",
        "ownerEmail": "ada@ess.example",
        "contactEmail": "ada@ess.example",
        # Upstream's schema says `value: instrument_id` without <>: the literal text.
        "instrumentId": "instrument_id",
        "creationLocation": "ESS:CODA",
        "ownerGroup": "ess_proposal_443503",
        "accessGroups": SIMS,
        "sourceFolder": str(path.parent.parent),
        "scientificMetadata": {
            "start_time": sm("2024-10-28T09:06:41.186000+00:00", "date", "Start Time"),
            "end_time": sm("2024-10-28T09:18:14.376000+00:00", "date", "End Time"),
            "run_number": sm(31010, "integer", "Run Number"),
            "job_id": sm("f22acb1c-950b-11ef-a3ef-fa163e9aae0a", "string", "Job Id"),
            "acquisition_team_members": sm(CODA_TEAM, "string", "Acquisition Team Members"),
        },
    }
    (block,) = standin.origdatablocks
    (entry,) = job["origdatablock"]["dataFileList"]
    assert entry["path"] == str(path) and entry["size"] == path.stat().st_size
    assert entry["chk"] == hashlib.blake2b(path.read_bytes()).hexdigest()
    assert {entry["uid"], entry["gid"]} <= {str(path.stat().st_uid), str(path.stat().st_gid)}
    assert entry["perm"] == oct(path.stat().st_mode)
    assert job["origdatablock"]["chkAlg"] == "blake2b"
    assert block["datasetId"] == dataset["pid"] and block["ownerGroup"] == "ess_proposal_443503"


def test_small_ymir_payloads(upstream: Any, standin: Any) -> None:
    """small-ymir.hdf with upstream's small-ymir schema: lookups, getitem, str-replace, dates."""
    config, files = upstream
    path = files["small-ymir"]
    job = ingest(Runtime.from_config(config), new_job(path, config.ingestion.allowed_data_roots))
    dataset = dict(job["dataset"])
    dataset.pop("creationTime")
    run_id = job["run_id"]
    assert dataset == {
        "pid": "20.500.12269/90d87f9a-950f-11ef-9101-fa163e943f63",
        "isPublished": False,
        "type": "raw",
        "techniques": [],
        "proposalId": "876380",
        "datasetName": f"october 28th, lego test 1, cont - {run_id}",
        "principalInvestigator": "Lise Meitner",
        "owner": "Lise Meitner",
        "ownerEmail": "lise@ess.example",
        "contactEmail": "lise@ess.example",
        "instrumentId": "ess-ymir-0001",
        "creationLocation": "ESS:CODA:YMIR",
        "startTime": "2024-10-28T09:32:35.895000+00:00",
        "endTime": "2024-10-28T09:34:50.524000+00:00",
        "runNumber": "11465",
        "ownerGroup": "876380",
        "accessGroups": SIMS,
        "sourceFolder": str(path.parent.parent).replace("ess/raw", "ess/data"),
        "keywords": ["YMIR"],
        "scientificMetadata": {
            "start_time": sm("2024-10-28T09:32:35.895000+00:00", "date", "Start Time"),
            "end_time": sm("2024-10-28T09:34:50.524000+00:00", "date", "End Time"),
            "run_number": sm(11465, "integer", "Run Number"),
            "job_id": sm("90d87f9a-950f-11ef-9101-fa163e943f63", "string", "ESS Data Collection Job Id"),
            "ingestor_run_id": sm(run_id, "string", "ESS Ingestor Run Id"),
            "acquisition_team_members": sm(YMIR_TEAM, "string", "Acquisition Team Members"),
        },
    }
    assert len(standin.origdatablocks) == 1


def test_dataset_size_counts_each_file_once(upstream: Any, standin: Any) -> None:
    """SciCat adds the origdatablock's size and file count; the dataset is not double-counted."""
    config, files = upstream
    path = files["small-coda"]
    job = ingest(Runtime.from_config(config), new_job(path, config.ingestion.allowed_data_roots))
    stored = standin.datasets[job["pid"]]
    assert (stored["size"], stored["numberOfFiles"]) == (path.stat().st_size, 1)


def test_rerun_of_real_files_creates_nothing(upstream: Any, standin: Any) -> None:
    """Both real files ingested twice: two datasets, two origdatablocks, same run id."""
    config, files = upstream
    rt = Runtime.from_config(config)
    first = [ingest(rt, new_job(path, config.ingestion.allowed_data_roots)) for path in files.values()]
    second = [ingest(rt, new_job(path, config.ingestion.allowed_data_roots)) for path in files.values()]
    assert [job["dataset_created"] for job in second] == [False, False]
    assert [job["run_id"] for job in first] == [job["run_id"] for job in second]
    assert len(standin.datasets) == 2 and len(standin.origdatablocks) == 2

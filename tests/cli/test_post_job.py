"""``post-job`` (ADR-004) end to end against the stand-in: one SciCat job per file, exactly once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, ymir_file
from offline_ingestor.errors import ScicatRejected
from offline_ingestor.ingest.executor import StepExecutor
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.jobs import JOB_MARKER
from offline_ingestor.ingest.ledger import MemoryLedger
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.steps import STEPS
from offline_ingestor.testing import Fault

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)

JOB_SECTION = """
scicat_job:
  type: ingest-followup
  job_params:
    dataset: <dataset_pid>
    proposal: <proposal_id>
    note: "run of <proposal_id>"
"""


def _schemas(tmp_path: Path, section: str = JOB_SECTION) -> Path:
    schemas = tmp_path / "schemas"
    schemas.mkdir(exist_ok=True)
    text = (ROOT / "schemas/ess-ymir.imsc.yml").read_text()
    (schemas / "ymir.imsc.yml").write_text(text + section)
    return schemas


def _config(make_config: Any, standin: Any, tmp_path: Path, api: str = "v3", **more: Any) -> Any:
    host = standin.url_v3 if api == "v3" else standin.base_url + "/v4"
    return make_config(
        standin,
        ingestion={"schemas_directory": str(_schemas(tmp_path, **more))},
        scicat={"api_version": api, "host": host},
    )


def run(config: Any, path: Path) -> Any:
    rt = Runtime.from_config(config)
    job = new_job(path, config.ingestion.allowed_data_roots, must_exist=False)
    return ingest(rt, job, policy=NO_WAIT, sleep=lambda _: None)


@pytest.mark.parametrize("api", ["v3", "v4"])
def test_one_job_naming_the_dataset_in_the_shape_of_the_api(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path, api: str
) -> None:
    """The job has the rendered jobParams, the dataset (v3: datasetList, v4: jobParams) and its marker."""
    job = run(_config(make_config, standin, tmp_path, api), ymir_file(data_root))
    (stored,) = standin.jobs
    assert job["scicat_job_created"] is True and job["scicat_job_id"] == stored["id"]
    assert stored["type"] == "ingest-followup"
    params = stored["jobParams"]
    assert params["dataset"] == job["pid"] and params["proposal"] == "876380"
    assert params["note"] == "run of 876380"
    assert params["datasetList"] == [{"pid": job["pid"], "files": []}]
    assert params[JOB_MARKER]
    assert stored["ownerGroup"] == job["dataset"]["ownerGroup"]  # the dataset's, by default


def test_a_rerun_creates_no_second_job(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """The marker is looked up before the POST: a second run finds the job (rule: look up first)."""
    config = _config(make_config, standin, tmp_path)
    path = ymir_file(data_root)
    first, second = run(config, path), run(config, path)
    assert len(standin.jobs) == 1
    assert second["scicat_job_created"] is False and second["scicat_job_id"] == first["scicat_job_id"]


def test_a_lost_answer_to_the_job_post_is_found_by_the_retry(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """SciCat stores the job, the answer is lost (502 after handling): the retry finds it, no second job."""
    config = _config(make_config, standin, tmp_path, api="v4")
    standin.inject(Fault(method="POST", path_regex=r"/jobs$", status=502, after_handling=True))
    job = run(config, ymir_file(data_root))
    assert len(standin.jobs) == 1
    assert job["scicat_job_id"] == standin.jobs[0]["id"]


def test_a_refused_job_fails_its_step_and_leaves_the_dataset_whole(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """An unknown job type fails post-job; dataset and block stay; once fixed, a rerun only adds the job."""
    config = _config(make_config, standin, tmp_path)
    standin.job_types.clear()
    path = ymir_file(data_root)
    with pytest.raises(ScicatRejected) as refused:
        run(config, path)
    assert refused.value.step == "post-job" and "Invalid job type" in str(refused.value)
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1 and standin.jobs == []
    standin.job_types.add("ingest-followup")
    job = run(config, path)
    assert job["dataset_created"] is False and job["origdatablock_created"] is False
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1 and len(standin.jobs) == 1


def test_without_a_section_the_step_makes_no_call(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """A schema without scicat_job passes post-job without asking SciCat anything."""
    job = run(_config(make_config, standin, tmp_path, section=""), ymir_file(data_root))
    assert job["scicat_job_id"] is None and STEPS[-1] == "post-job"
    assert not any("/jobs" in path for _, path, _ in standin.requests)


def test_the_job_post_is_noted_before_it_is_sent(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """The job POST is announced to the ledger (write:post-job): the in-flight window covers it."""
    config = _config(make_config, standin, tmp_path)
    ledger = MemoryLedger()
    executor = StepExecutor(Runtime.from_config(config), ledger, NO_WAIT, max_redeliveries=3)
    job = new_job(ymir_file(data_root), config.ingestion.allowed_data_roots)
    for step in STEPS:
        job = executor.run(step, job, attempt=0, owner="o").job  # type: ignore[union-attr]
    fields = ledger.records[job["key"]]
    assert fields.get("write:post-job") and fields.get("writer:post-job") == "o"
    assert len(standin.jobs) == 1


def test_a_job_post_stored_after_the_client_gave_up_is_not_repeated(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """The POST times out at the client and is stored later: the retry waits its window, then finds it."""
    config = _config(make_config, standin, tmp_path)
    config = config.model_copy(update={"scicat": config.scicat.model_copy(update={"timeout": 1.0})})
    standin.inject(Fault(method="POST", path_regex=r"/jobs$", status=None, delay_s=2.5))
    rt = Runtime.from_config(config)
    job = new_job(ymir_file(data_root), config.ingestion.allowed_data_roots)
    ingest(rt, job, policy=RetryPolicy(max_retries=3, backoff_s=0.1, backoff_max_s=0.1))
    time.sleep(2.5)  # a second POST would have landed by now
    assert len(standin.jobs) == 1, standin.requests

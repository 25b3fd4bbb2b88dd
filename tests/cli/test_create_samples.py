"""``sample_attachment.create_missing`` (ADR-003) against the stand-in: a new sample, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from helpers import ROOT, ymir_file
from offline_ingestor.errors import ScicatUnavailable
from offline_ingestor.ingest.executor import Done, StepExecutor
from offline_ingestor.ingest.job import Job, new_job
from offline_ingestor.ingest.ledger import MemoryLedger
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.ingest.samples import ensure_samples
from offline_ingestor.ingest.steps import STEPS, build_dataset, extract, select_schema
from offline_ingestor.queue.sample_lease import RedisSampleLease
from offline_ingestor.schema.samples import derived_sample_id
from offline_ingestor.testing import Fault

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)
SECTION = """
sample_attachment:
  query_sample_name: true
  create_missing: true
  fields:
    sampleCharacteristics: {name: <proposal_id>}
    type: powder
"""


def _config(make_config: Any, standin: Any, tmp_path: Path) -> Any:
    schemas = tmp_path / "schemas"
    schemas.mkdir(exist_ok=True)
    (schemas / "ymir.imsc.yml").write_text((ROOT / "schemas/ess-ymir.imsc.yml").read_text() + SECTION)
    return make_config(standin, ingestion={"schemas_directory": str(schemas)})


def run(config: Any, path: Path) -> Any:
    rt = Runtime.from_config(config)
    job = new_job(path, config.ingestion.allowed_data_roots, must_exist=False)
    return ingest(rt, job, policy=NO_WAIT, sleep=lambda _: None)


def test_a_missing_sample_is_created_once_and_attached(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """The sample gets the derived id, name, proposal, the dataset's groups and the schema's fields."""
    config = _config(make_config, standin, tmp_path)
    first = run(config, ymir_file(data_root, "run-1.hdf"))
    second = run(config, ymir_file(data_root, "run-2.hdf"))
    (sample,) = standin.samples
    assert sample["sampleId"] == derived_sample_id("876380", "A Sample")
    named = (sample["sampleName"], sample["description"], sample["proposalId"])
    assert named == ("A Sample", "A Sample", "876380")
    assert sample["ownerGroup"] == first["dataset"]["ownerGroup"]
    assert sample["sampleCharacteristics"] == {"name": "876380"} and sample["type"] == "powder"
    for job in (first, second):
        assert standin.datasets[job["pid"]]["sampleIds"] == [sample["sampleId"]]


def test_two_files_that_both_saw_no_sample_make_one(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """Both extracts run before either post-dataset: the derived id makes the second find the first's."""
    config = _config(make_config, standin, tmp_path)
    rt = Runtime.from_config(config)
    ledger = MemoryLedger()
    executor = StepExecutor(rt, ledger, NO_WAIT, max_redeliveries=3)
    roots = config.ingestion.allowed_data_roots
    jobs: list[Job] = [new_job(ymir_file(data_root, name), roots) for name in ("a.hdf", "b.hdf")]
    for step in STEPS:
        for index, job in enumerate(jobs):
            outcome = executor.run(step, job, attempt=0, owner=f"chain-{index}")
            assert isinstance(outcome, Done), outcome
            jobs[index] = outcome.job
        if step == "extract":
            assert all(job.get("new_samples") for job in jobs)  # neither saw a sample
    assert len(standin.samples) == 1
    assert {standin.datasets[job["pid"]]["sampleIds"][0] for job in jobs} == {standin.samples[0]["sampleId"]}


def _prepared(config: Any, path: Path) -> tuple[Runtime, Job]:
    rt = Runtime.from_config(config)
    job = new_job(path, config.ingestion.allowed_data_roots)
    return rt, build_dataset(rt, extract(rt, select_schema(rt, job)))


def test_a_post_without_answer_keeps_the_lease_for_its_window(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """A sample POST without answer keeps the sample's lease: nobody looks before it can no longer land."""
    config = _config(make_config, standin, tmp_path)
    rt, job = _prepared(config, ymir_file(data_root))
    rt.sample_lease = RedisSampleLease(fakeredis.FakeRedis(decode_responses=True))
    standin.inject(Fault(method="POST", path_regex=r"/samples$", reset_connection=True, after_handling=True))
    with pytest.raises(ScicatUnavailable):
        ensure_samples(rt, job)
    sample_id = job["new_samples"][0]["sampleId"]
    wait = rt.sample_lease.acquire(sample_id, "another-writer", 1.0)
    assert wait > config.scicat.timeout  # held for the POST's window (timeout + margin)
    # Once the window is over the next writer finds the sample the lost POST stored: no second POST
    rt.sample_lease.release(sample_id, "another-writer")
    rt.sample_lease.redis.delete(f"oi:sample-lease:{sample_id}")  # type: ignore[attr-defined]
    ensure_samples(rt, job)
    assert len(standin.samples) == 1
    assert [m for m, p, _ in standin.requests if p.endswith("/samples")].count("POST") == 1


def test_a_duplicate_id_answered_500_is_the_look_up(
    standin: Any, make_config: Any, data_root: Path, tmp_path: Path
) -> None:
    """The real backend answers a duplicate sampleId with 500: a GET then finds our sample, nothing fails."""
    config = _config(make_config, standin, tmp_path)
    rt, job = _prepared(config, ymir_file(data_root))
    sample = ensure_samples  # the first writer
    sample(rt, job)
    # A second writer that skips its first GET (it raced the first writer) meets the 500
    standin.inject(Fault(method="GET", path_regex=r"/samples/", status=404, times=2))
    ensure_samples(rt, job)
    assert len(standin.samples) == 1

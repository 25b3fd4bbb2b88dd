"""POST-first (issue 14) never costs exactly-once: the cases where SciCat's 409 would not catch a rerun.

One runtime stands for one worker process: it learns from SciCat's answers whether it may
create a dataset before looking it up (``scicat/write_order.py``). Each ``ingest`` call keeps
its records in memory, so a second call for a file is a re-run whose Redis records are gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import ymir_file
from offline_ingestor.errors import IdempotencyConflict
from offline_ingestor.job import new_job
from offline_ingestor.pipeline import ingest
from offline_ingestor.retry import RetryPolicy
from offline_ingestor.runtime import Runtime
from offline_ingestor.testing import Fault, ScicatStandin
from offline_ingestor.testing.scenario import seed

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def ingest_file(rt: Runtime, config: Any, path: Path) -> dict[str, Any]:
    return ingest(rt, new_job(path, config), policy=NO_WAIT, sleep=lambda _: None)


def numbered_file(data_root: Path, n: int) -> Path:
    return ymir_file(data_root, f"run-{n:04d}.hdf", job_id=f"5d0c2a9e-0000-4000-8000-{n:012d}")


def warm_process(config: Any, data_root: Path) -> Runtime:
    """A process that has created two datasets under the pids it sent: it now posts first."""
    rt = Runtime.from_config(config)
    ingest_file(rt, config, numbered_file(data_root, 0))
    ingest_file(rt, config, numbered_file(data_root, 1))
    assert rt.dataset_order.post_first()
    return rt


def config_finding_by_job_id(make_config: Any, standin: Any) -> Any:
    """The example config's setting: a dataset stored under another pid is found by its job id."""
    return make_config(standin, ingestion={"check_if_dataset_exists_by_metadata": True})


@pytest.mark.parametrize(
    "misbehaviour",
    [{"rewrite_pid_prefix": "rewritten-"}, {"drop_client_pids": True}],
    ids=["prefixes-pids", "drops-pids"],
)
def test_a_scicat_that_rewrites_pids_is_never_posted_to_first(
    make_config: Any, data_root: Path, misbehaviour: dict[str, Any]
) -> None:
    """Against a SciCat that stores other pids than ours, re-runs in one process find every dataset."""
    with seed(ScicatStandin(**misbehaviour)) as scicat:
        # Given a process that has created datasets of several files, each under a rewritten pid
        config = config_finding_by_job_id(make_config, scicat)
        rt = Runtime.from_config(config)
        files = [numbered_file(data_root, n) for n in range(4)]
        first = [ingest_file(rt, config, path) for path in files]
        # When the same process re-runs them with their records gone
        again = [ingest_file(rt, config, path) for path in files]
        # Then each is found (a POST-first would have made a second dataset: no 409 for it)
        assert all(job["pid"] != job["requested_pid"] for job in first)
        assert [job["pid"] for job in again] == [job["pid"] for job in first]
        assert not any(job["dataset_created"] for job in again)
        assert len(scicat.datasets) == 4 and len(scicat.origdatablocks) == 4


def test_a_scicat_reconfigured_to_rewrite_pids_is_looked_up_again(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """A process that learnt "pids are kept" stops posting first at the first pid not kept."""
    # Given a process that has seen SciCat keep its pids (so it posts first)
    config = config_finding_by_job_id(make_config, standin)
    rt = warm_process(config, data_root)
    # When SciCat starts making its own pids and a new file is created, then re-run
    standin.drop_client_pids = True
    created = ingest_file(rt, config, numbered_file(data_root, 2))
    rerun = ingest_file(rt, config, numbered_file(data_root, 2))
    # Then the rerun found that dataset instead of creating another
    assert created["pid"] != created["requested_pid"] and rerun["pid"] == created["pid"]
    assert not rerun["dataset_created"] and not rt.dataset_order.post_first()
    assert len(standin.datasets) == 3 and len(standin.origdatablocks) == 3


def test_a_retry_after_a_lost_create_answer_looks_first(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """The retry of a POST whose answer was lost looks the dataset up instead of posting again."""
    # Given a process that posts first, against a SciCat that has just begun to make its own pids
    config = config_finding_by_job_id(make_config, standin)
    rt = warm_process(config, data_root)
    standin.drop_client_pids = True
    # When the create is stored but its answer is lost (so the process learns nothing from it)
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=502, after_handling=True))
    job = ingest_file(rt, config, numbered_file(data_root, 2))
    # Then the retry found the stored dataset: one dataset, one block
    assert job["pid"] != job["dataset"]["pid"] and job["dataset_created"] is False
    assert len(standin.datasets) == 3 and len(standin.origdatablocks) == 3


def test_a_conflict_on_post_first_checks_the_dataset_is_ours(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """A 409 is not "ours": the dataset behind it is read and compared like a looked-up one."""
    # Given a process that posts first, and another file's dataset under our next file's pid
    config = make_config(standin)
    rt = warm_process(config, data_root)
    pid = "20.500.12269/5d0c2a9e-0000-4000-8000-000000000002"  # what file 2 sends
    standin.add_dataset({"pid": pid, "ownerGroup": "other", "sourceFolder": "/elsewhere", "size": 0})
    # When that file is ingested
    with pytest.raises(IdempotencyConflict, match="not this file's"):
        ingest_file(rt, config, numbered_file(data_root, 2))
    # Then nothing was attached to the other dataset
    assert [block["datasetId"] for block in standin.origdatablocks if block["datasetId"] == pid] == []

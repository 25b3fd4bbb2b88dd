"""POST-first (issue 14) never costs exactly-once: the cases where SciCat's 409 would not do a look-up's job.

One runtime stands for one worker process: it learns from SciCat's answers whether it may
create a dataset before looking it up (``scicat/write_order.py``). Each ``ingest`` call keeps
its records in memory, so a second call for a file is a re-run whose Redis records are gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import ymir_file
from offline_ingestor.errors import CannotVerify, IdempotencyConflict
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pid_memo import FileMemo
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.testing import Fault, ScicatStandin
from offline_ingestor.testing.scenario import seed

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def ingest_file(rt: Runtime, config: Any, path: Path) -> dict[str, Any]:
    return ingest(
        rt, new_job(path, config.ingestion.allowed_data_roots), policy=NO_WAIT, sleep=lambda _: None
    )


def numbered_file(data_root: Path, n: int, **kwargs: Any) -> Path:
    return ymir_file(data_root, f"run-{n:04d}.hdf", job_id=f"5d0c2a9e-0000-4000-8000-{n:012d}", **kwargs)


def warm_process(config: Any, data_root: Path, start: int = 0) -> Runtime:
    """A process that has created two datasets under the pids it sent: it now posts first."""
    rt = Runtime.from_config(config)
    ingest_file(rt, config, numbered_file(data_root, start))
    ingest_file(rt, config, numbered_file(data_root, start + 1))
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


def test_the_job_id_search_is_never_skipped(make_config: Any, data_root: Path) -> None:
    """A dataset stored under another pid earlier is found by job id, even by a warm process."""
    with seed(ScicatStandin(drop_client_pids=True)) as scicat:
        # Given file 0 catalogued under a pid of SciCat's own (a proxy dropped ours back then)
        config = config_finding_by_job_id(make_config, scicat)
        first = ingest_file(Runtime.from_config(config), config, numbered_file(data_root, 0))
        # And SciCat keeping pids now, seen so by a process that has created two datasets
        scicat.drop_client_pids = False
        rt = warm_process(config, data_root, start=1)
        # When that process re-runs file 0 (its records gone)
        rerun = ingest_file(rt, config, numbered_file(data_root, 0))
        # Then it looked before creating, and found it by its job id
        assert rerun["pid"] == first["pid"] and rerun["dataset_created"] is False
        assert len(scicat.datasets) == 3 and len(scicat.origdatablocks) == 3


def test_a_scicat_that_starts_rewriting_pids_is_looked_up_again(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """After one pid came back rewritten, re-runs of older files are found by their pid again."""
    # Given a process that posts first (pids kept, no job-id search configured)
    config = make_config(standin)
    rt = warm_process(config, data_root)
    # (keeping a rewritten pid for reruns as ingest-now does; kept nowhere it is a conflict, issue 25)
    rt.pid_memo = FileMemo(config.ingestion.file_handling)
    # When SciCat starts prefixing pids, a new file is created, then an older file is re-run
    standin.rewrite_pid_prefix = "proxy-"
    created = ingest_file(rt, config, numbered_file(data_root, 2))
    rerun = ingest_file(rt, config, numbered_file(data_root, 0))
    # Then the re-run looked its pid up (found) instead of posting it to be stored prefixed
    assert created["pid"].startswith("proxy-") and not rt.dataset_order.post_first()
    assert rerun["dataset_created"] is False and not rerun["pid"].startswith("proxy-")
    assert len(standin.datasets) == 3 and len(standin.origdatablocks) == 3


def test_an_account_that_cannot_read_back_looks_first(make_config: Any, data_root: Path) -> None:
    """A privileged-only account's lost 409 answer must not be taken as "stored just now"."""
    with seed(ScicatStandin()) as scicat:
        # Given file 0 catalogued by a privileged-only account that may not read it back
        config = make_config(scicat, scicat={"username": "privingest", "password": "privingestpw"})
        # (proposal 999001: the account reads the proposal, not the dataset's groups)
        ingest_file(Runtime.from_config(config), config, numbered_file(data_root, 0, proposal="999001"))
        assert len(scicat.origdatablocks) == 1
        # And a new process of that account that has seen SciCat keep its pids (own groups' files)
        rt = Runtime.from_config(config)
        rt.dataset_order.note_created(sent_pid="20.500.12269/own", stored_pid="20.500.12269/own")
        # When it re-runs file 0 and SciCat's answer to a dataset POST would be lost
        scicat.inject(
            Fault(method="POST", path_regex=r"/datasets$", reset_connection=True, after_handling=True)
        )
        with pytest.raises(CannotVerify):
            ingest_file(rt, config, numbered_file(data_root, 0, proposal="999001"))
        # Then it was refused before any write: no second block
        assert len(scicat.origdatablocks) == 1 and len(scicat.datasets) == 1


def test_validation_before_writing_looks_first(standin: Any, make_config: Any, data_root: Path) -> None:
    """With isValid before writes, a re-run finds its dataset instead of asking isValid again."""
    # Given a warm process that validates before writing, and file 0 catalogued
    config = make_config(standin, scicat={"validate_before_write": True})
    rt = warm_process(config, data_root)
    # When SciCat's isValid would now reject the payload, and file 0 is re-run
    standin.inject(
        Fault(method="POST", path_regex=r"/isValid$", status=200, body={"valid": False}, times=None)
    )
    rerun = ingest_file(rt, config, numbered_file(data_root, 0))
    # Then the re-run found the dataset (nothing to validate, nothing written)
    assert rerun["dataset_created"] is False and len(standin.datasets) == 2


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

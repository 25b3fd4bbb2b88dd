"""How many requests SciCat gets per file (issue 14): the stand-in counts them over HTTP.

One runtime (one worker process) ingests files of one proposal; each ``ingest`` call keeps
its records in memory, so a second run of a file is a re-run whose job record is gone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from helpers import ymir_file
from offline_ingestor.job import new_job
from offline_ingestor.pipeline import ingest
from offline_ingestor.retry import RetryPolicy
from offline_ingestor.runtime import Runtime

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def kinds(standin: Any, since: int = 0) -> Counter[str]:
    """Requests per kind: method and the route with pids left out."""
    counted: Counter[str] = Counter()
    for method, path, _ in standin.requests[since:]:
        route = path.removeprefix("/api/v3/").split("/")
        counted[f"{method} {route[0]}{'/…/' + route[-1] if len(route) > 2 else ''}"] += 1
    return counted


def test_new_files_cost_their_two_posts_and_look_ups_once(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """Six files of one proposal: a GET of the pid and two POSTs each, look-ups asked once.

    The dataset is looked up before it is created (GET-first): a POST-first order saves that
    GET but would create a second dataset on a rerun against a SciCat that rewrites pids.
    """
    config = make_config(standin)
    rt = Runtime.from_config(config)
    files = [
        ymir_file(data_root, f"run-{n:04d}.hdf", job_id=f"0b1e7c4e-0000-4000-8000-00000000000{n}")
        for n in range(6)
    ]
    for path in files:
        ingest(rt, new_job(path, config), policy=NO_WAIT, sleep=lambda _: None)
    counted = kinds(standin)
    assert counted["POST datasets"] == 6 and counted["POST origdatablocks"] == 6
    assert counted["GET proposals"] == 1 and counted["GET instruments"] == 1
    assert counted["POST auth"] == 1  # one login per process
    # Per process: a login, whoami and two reads that probe the account's rights (scicat/rights.py)
    assert counted["POST auth"] == 1 and counted["GET auth"] == 1
    assert counted["GET datasets"] == 6 + 2  # each file's pid answered 404, then it was created
    assert sum(counted.values()) == 6 * 3 + 2 + 4, counted  # no GET of the new datasets' blocks


def test_a_rerun_without_its_record_checks_and_writes_nothing(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """Re-runs of done files (records lost): no POST, a GET of the dataset and of its blocks."""
    config = make_config(standin)
    rt = Runtime.from_config(config)
    files = [
        ymir_file(data_root, f"run-{n:04d}.hdf", job_id=f"0b1e7c4e-0000-4000-8000-00000000000{n}")
        for n in range(6)
    ]
    for path in files:
        ingest(rt, new_job(path, config), policy=NO_WAIT, sleep=lambda _: None)
    before = len(standin.requests)
    for path in files:
        job = ingest(rt, new_job(path, config), policy=NO_WAIT, sleep=lambda _: None)
        assert job["dataset_created"] is False and job["origdatablock_created"] is False
    counted = kinds(standin, before)
    assert len(standin.datasets) == 6 and len(standin.origdatablocks) == 6
    assert counted["POST datasets"] == 0 and counted["POST origdatablocks"] == 0
    assert counted["GET datasets/…/origdatablocks"] == 6, counted
    assert sum(counted.values()) <= 6 * 3, counted

"""How many requests SciCat gets per file (issue 14): the stand-in counts them over HTTP.

One runtime (one worker process) ingests files of one proposal; each ``ingest`` call keeps
its records in memory, so a second run of a file is a re-run whose job record is gone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from helpers import ymir_file
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.0, backoff_max_s=0.0)


def kinds(standin: Any, since: int = 0) -> Counter[str]:
    """Requests per kind: method and the route with pids left out."""
    counted: Counter[str] = Counter()
    for method, path, _ in standin.requests[since:]:
        route = path.removeprefix("/api/v3/").split("/")
        counted[f"{method} {route[0]}{'/…/' + route[-1] if len(route) > 2 else ''}"] += 1
    return counted


def files_of_one_proposal(data_root: Path, count: int) -> list[Path]:
    return [
        ymir_file(data_root, f"run-{n:04d}.hdf", job_id=f"0b1e7c4e-0000-4000-8000-{n:012d}")
        for n in range(count)
    ]


def ingest_all(rt: Runtime, config: Any, files: list[Path]) -> list[dict[str, Any]]:
    return [
        ingest(rt, new_job(path, config.ingestion.allowed_data_roots), policy=NO_WAIT, sleep=lambda _: None)
        for path in files
    ]


def test_new_files_cost_their_two_posts_and_look_ups_once(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """Six new files of one proposal: two POSTs and a GET of the blocks each; the look-ups once.

    The first dataset is looked up before it is created (GET-first): its 201 shows that this
    SciCat keeps the pids it is sent, so the next ones are created without a look-up (their
    409 would be the look-up; scicat/write_order.py). A 201 for a pid we sent does not mean
    "no block": a dataset an admin deleted leaves its blocks (issue 25), so they are listed.
    """
    config = make_config(standin)
    rt = Runtime.from_config(config)
    ingest_all(rt, config, files_of_one_proposal(data_root, 6))
    counted = kinds(standin)
    assert counted["POST datasets"] == 6 and counted["POST origdatablocks"] == 6
    assert counted["GET proposals"] == 1 and counted["GET instruments"] == 1
    # Per process: a login, whoami and two reads that probe the account's rights (scicat/rights.py)
    assert counted["POST auth"] == 1 and counted["GET auth"] == 1
    assert counted["GET datasets"] == 1 + 2, counted  # only the first file's pid answered 404
    assert counted["GET datasets/…/origdatablocks"] == 6, counted
    assert sum(counted.values()) == 6 * 3 + 1 + 2 + 4, counted


def test_a_run_of_reruns_looks_first_after_two_conflicts(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """Re-runs whose records are gone: two pay a 409, then the process looks before posting."""
    config = make_config(standin)
    rt = Runtime.from_config(config)
    files = files_of_one_proposal(data_root, 8)
    ingest_all(rt, config, files)
    before = len(standin.requests)
    ingest_all(rt, config, files)
    counted = kinds(standin, before)
    assert len(standin.datasets) == 8 and len(standin.origdatablocks) == 8
    assert counted["POST datasets"] == 2 and counted["POST origdatablocks"] == 0, counted
    # Each: a GET of its dataset and of its blocks (the dataset's totals are checked from those).
    assert counted["GET datasets/…/origdatablocks"] == 8, counted
    assert sum(counted.values()) == 8 * 2 + 2, counted


def test_reruns_in_a_new_process_check_and_write_nothing(
    standin: Any, make_config: Any, data_root: Path
) -> None:
    """A new process re-running done files (records lost): a GET of each dataset and its blocks."""
    config = make_config(standin)
    files = files_of_one_proposal(data_root, 6)
    ingest_all(Runtime.from_config(config), config, files)
    before = len(standin.requests)
    for job in ingest_all(Runtime.from_config(config), config, files):
        assert job["dataset_created"] is False and job["origdatablock_created"] is False
    counted = kinds(standin, before)
    assert len(standin.datasets) == 6 and len(standin.origdatablocks) == 6
    assert counted["POST datasets"] == 0 and counted["POST origdatablocks"] == 0
    assert counted["GET datasets/…/origdatablocks"] == 6, counted
    # a login and the two look-ups per process (no write: no probe of the account's rights)
    assert sum(counted.values()) == 6 * 2 + 1 + 2, counted

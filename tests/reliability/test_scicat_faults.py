"""SciCat misbehaving under a real worker: transient faults are retried, conflicts are flagged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, failures, make_files, tally

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def posts(standin: Any, suffix: str = "/datasets") -> list[int]:
    return [status for method, path, status in standin.requests if method == "POST" and path.endswith(suffix)]


def ingest(standin: Any, config: Path, start_worker: Any, files: dict[Path, str], timeout: float = 60) -> Any:
    start_worker(config)
    enqueue_all(config, files)
    wait_for(lambda: tally(standin, files).lost == 0, timeout=timeout, what="every file to be ingested")
    result = tally(standin, files)
    assert (result.lost, result.duplicated, result.datasets, result.blocks) == (0, 0, len(files), len(files))
    return result


def test_5xx_and_429_are_retried(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """500, 502, 503 and 429 on the dataset POST are retried until it goes through, once."""
    for status in (500, 502, 503, 429):
        standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=status))
    figures(ingest(standin, fast_config(), start_worker, make_files(data_root, 1)))
    assert posts(standin) == [500, 502, 503, 429, 201]


def test_429_retry_after_is_honoured(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """A 429 with Retry-After: 2 makes the worker wait at least that long before the next try."""
    # Given SciCat answering 429 with Retry-After: 2; backoff alone would retry within 0.1-0.2 s
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", status=429, headers={"Retry-After": "2"}))
    config = fast_config(queue={"retry_backoff_max_s": 5})
    start_worker(config)
    files = make_files(data_root, 1)
    enqueue_all(config, files)
    # When the 429 arrives
    wait_for(lambda: posts(standin) == [429], what="the 429")
    seen = time.monotonic()
    wait_for(lambda: len(posts(standin)) == 2, what="the retried POST")
    # Then the retry came no sooner than Retry-After asked (a lower bound, robust on slow CI)
    assert time.monotonic() - seen >= 1.5
    wait_for(lambda: tally(standin, files).lost == 0, what="the file")
    figures(tally(standin, files))


def test_timeout_is_retried(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """A SciCat answer slower than scicat.timeout counts as a timeout and the step is retried."""
    standin.inject(Fault(method="GET", path_regex=r"/proposals/", status=None, delay_s=3))
    config = fast_config(scicat={"timeout": 1})
    workers: list[Any] = []
    figures(ingest(standin, config, lambda c: workers.append(start_worker(c)), make_files(data_root, 1)))
    assert "GET /api/v3/proposals/876380 timed out" in workers[0].log.read_text()


@pytest.mark.parametrize("after_handling", [False, True], ids=["before-handling", "after-handling"])
def test_connection_reset_is_retried(
    after_handling: bool, standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """A connection reset on a POST (before or after SciCat stored it) is retried without a duplicate."""
    for suffix in ("/datasets$", "/origdatablocks$"):
        standin.inject(
            Fault(method="POST", path_regex=suffix, reset_connection=True, after_handling=after_handling)
        )
    figures(ingest(standin, fast_config(), start_worker, make_files(data_root, 1)))


def test_slow_scicat(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """Every SciCat answer 0.3 s late (under the timeout): ten files still ingest once each."""
    standin.inject(Fault(status=None, delay_s=0.3, times=None))
    figures(ingest(standin, fast_config(), start_worker, make_files(data_root, 10), timeout=120))


def test_token_expiry_logs_in_again(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """After SciCat expires the session (401 SESSION_EXPIRED) the worker logs in again and goes on."""
    config = fast_config()
    first = make_files(data_root, 2, prefix="before")
    ingest(standin, config, start_worker, first)
    logins = sum(1 for _, path, _ in standin.requests if path.endswith("/auth/login"))
    # When every token is expired
    standin.expire_tokens()
    second = make_files(data_root, 2, prefix="after")
    enqueue_all(config, second)
    # Then the new files are ingested after a 401 and a new login
    wait_for(lambda: tally(standin, second).lost == 0, what="files after the expiry")
    assert any(status == 401 for _, _, status in standin.requests)
    assert sum(1 for _, path, _ in standin.requests if path.endswith("/auth/login")) > logins
    assert not failures(config)
    figures(tally(standin, {**first, **second}))


def test_409_for_our_own_dataset_is_ours(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """POST answered 409 for the pid we stored before a lost answer: taken as ours, one block added."""
    # Given a dataset POST whose answer is lost after SciCat stored it, and a stale read
    # that does not see it yet (by pid, nor by job id: the look-up before the POST, the one
    # right after the lost answer and the retry's), so the retry's POST gets 409
    standin.inject(Fault(method="POST", path_regex=r"/datasets$", reset_connection=True, after_handling=True))
    standin.inject(Fault(method="GET", path_regex=r"/datasets/[^/]+$", status=404, times=3))
    standin.inject(Fault(method="GET", path_regex=r"/datasets$", status=200, body=[], times=None))
    figures(ingest(standin, fast_config(), start_worker, make_files(data_root, 1)))
    assert posts(standin) == [0, 409]


@pytest.mark.parametrize("via_409", [False, True], ids=["found-by-get", "found-by-409"])
def test_foreign_dataset_with_our_pid_is_flagged(
    via_409: bool, standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """A dataset with our pid but another file's content is flagged (IdempotencyConflict), not reused."""
    files = make_files(data_root, 1)
    ((path, job_id),) = files.items()
    standin.add_dataset(
        {
            "pid": f"20.500.12269/{job_id}",
            "type": "raw",
            "ownerGroup": "someone-else",
            "sourceFolder": "/another/instrument/files",
            "datasetName": "not ours",
        }
    )
    if via_409:
        standin.inject(Fault(method="GET", path_regex=r"/datasets/[^/]+$", status=404, times=1))
    config = fast_config()
    start_worker(config)
    enqueue_all(config, files)
    wait_for(lambda: str(path) in failures(config), what="the failed registry entry")
    entry = failures(config)[str(path)]
    assert entry["error_class"] == "IdempotencyConflict" and entry["step"] == "post-dataset", entry
    assert "other" in entry["message"]
    assert not standin.origdatablocks
    figures(files=1, lost=0, duplicated=0)

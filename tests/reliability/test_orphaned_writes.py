"""A POST still on its way to SciCat when its sender stops waiting must not be sent twice.

The race (issue 17): a pool process is SIGKILLed while its origdatablock POST waits at SciCat;
the redelivered step lists the dataset's blocks *before* that orphaned POST is stored, sees
none, and posts a second block (an origdatablock has no server-side uniqueness). The rule
that closes it: every write records when it started, and a redelivered write step re-checks
SciCat only once that write can no longer be in flight (start + request timeout + margin).
The same holds without a kill: a POST that timed out at the client may still be stored, so
the retry of that attempt waits as long (ingest/executor.py, "Orphaned writes").
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for, ymir_file
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.pipeline import ingest
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.ingest.runtime import Runtime
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, make_files, tally

pytestmark = [pytest.mark.redis, pytest.mark.worker]

#: SciCat holds the orphaned POST this long before storing it.
HELD_S = 3.0


def test_block_post_orphaned_by_a_kill_is_not_repeated(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """SIGKILL while the block POST waits at SciCat: one block, stored by the orphaned request."""
    # Given SciCat holds the origdatablock POST for a while before storing it
    standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", status=None, delay_s=HELD_S))
    config = fast_config(scicat={"timeout": 5}, queue={"concurrency": 1})
    worker = start_worker(config, concurrency=1)
    files = make_files(data_root, 1)
    enqueue_all(config, files)

    # When the pool process is killed while that POST is held (a first write lists no blocks)
    def posting() -> bool:
        events = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
        return any(e.get("event") == "step.started" and e.get("step") == "post-origdatablock" for e in events)

    wait_for(posting, timeout=60, what="the origdatablock POST to be under way")
    wait_for(lambda: standin.pending_faults == 0, timeout=10, what="SciCat to hold the POST")
    for child in worker.children():
        os.kill(child, signal.SIGKILL)
    killed = time.monotonic()

    # Then the orphaned POST is stored, the redelivered step finds it, and no second block is made
    wait_for(lambda: '"ingest.finished"' in worker.log.read_text(), timeout=60, what="the file to finish")
    time.sleep(max(0.0, killed + HELD_S + 1.0 - time.monotonic()))  # the orphan has landed by now
    result = tally(standin, files)
    figures(result)
    assert (result.lost, result.duplicated) == (0, 0), standin.origdatablocks
    assert len(standin.origdatablocks) == 1
    assert '"step.waiting"' in worker.log.read_text()  # the redelivered step waited for it


def test_no_wait_without_a_lost_process(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path
) -> None:
    """A file whose steps all ran in one go never waits for orphaned writes."""
    config = fast_config()
    worker = start_worker(config)
    files = make_files(data_root, 3)
    enqueue_all(config, files)
    wait_for(lambda: len(standin.origdatablocks) == 3, timeout=60, what="three blocks")
    assert '"step.waiting"' not in worker.log.read_text()


#: SciCat stores a held write after this long; the client gives up after TIMEOUT_S.
SLOW_S, TIMEOUT_S = 2.5, 1.0


@pytest.mark.parametrize(
    ("route", "sections"),
    [
        (r"/origdatablocks$", {}),
        # SciCat makes the pid: nothing on SciCat's side refuses a second dataset; the job id
        # search finds the first one only if it looks after that POST was stored
        (
            r"/datasets$",
            {
                "dataset": {"allow_dataset_pid": False},
                "ingestion": {"check_if_dataset_exists_by_metadata": True},
            },
        ),
    ],
    ids=["block", "dataset-without-pid"],
)
def test_write_that_timed_out_and_was_stored_later_is_not_repeated(
    standin: Any, make_config: Any, data_root: Path, route: str, sections: dict[str, Any]
) -> None:
    """ingest-now: a POST the client gave up on is stored afterwards; the retry finds it."""
    # Given SciCat stores the write only after the client's timeout
    config = make_config(standin, scicat={"timeout": TIMEOUT_S}, **sections)
    standin.inject(Fault(method="POST", path_regex=route, status=None, delay_s=SLOW_S))
    # When the file is ingested (the first POST times out, the step is retried)
    job = ingest(
        Runtime.from_config(config),
        new_job(ymir_file(data_root), config.ingestion.allowed_data_roots),
        policy=RetryPolicy(max_retries=3, backoff_s=0.1, backoff_max_s=0.1),
    )
    time.sleep(SLOW_S)  # any second write would have landed by now
    # Then one dataset and one block: the retry waited for the first POST and found it
    assert len(standin.datasets) == 1 and len(standin.origdatablocks) == 1, standin.requests
    assert job["origdatablock_id"]


def test_worker_retry_after_a_timed_out_block_post_finds_it(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path
) -> None:
    """A worker: the block POST times out and is stored later; the retried step does not post again."""
    standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", status=None, delay_s=SLOW_S))
    config = fast_config(scicat={"timeout": TIMEOUT_S})
    worker = start_worker(config)
    files = make_files(data_root, 1)
    enqueue_all(config, files)
    wait_for(lambda: '"ingest.finished"' in worker.log.read_text(), timeout=60, what="the file to finish")
    time.sleep(SLOW_S)
    result = tally(standin, files)
    assert (result.lost, result.duplicated) == (0, 0), standin.origdatablocks
    assert len(standin.origdatablocks) == 1

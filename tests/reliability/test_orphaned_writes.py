"""A POST still on its way to SciCat when its worker process dies must not be sent twice.

The race (issue 17): a pool process is SIGKILLed while its origdatablock POST waits at SciCat;
the redelivered step lists the dataset's blocks *before* that orphaned POST is stored, sees
none, and posts a second block (an origdatablock has no server-side uniqueness). The rule
that closes it: every write records when it started, and a redelivered write step re-checks
SciCat only once that write can no longer be in flight (start + request timeout + margin).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
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

    # When the pool process is killed while that POST is held (after the blocks were listed)
    def posting() -> bool:
        events = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
        listed = any(m == "GET" and p.endswith("/origdatablocks") for m, p, _ in standin.requests)
        return listed and any(
            e.get("event") == "step.started" and e.get("step") == "post-origdatablock" for e in events
        )

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

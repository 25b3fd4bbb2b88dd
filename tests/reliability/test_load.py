"""Many small files enqueued at once: all ingested, none twice, worker memory reported (and bounded)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from reliability.runs import enqueue_all, failures, make_files, rss_kib, settled, tally

pytestmark = [pytest.mark.redis, pytest.mark.worker]

#: The long case: 10,000 files by default; ``RELIABILITY_LOAD_N`` lowers it on small machines.
LOAD_N = int(os.environ.get("RELIABILITY_LOAD_N", "10000"))


@pytest.mark.parametrize(
    "count",
    [pytest.param(300, id="300-files"), pytest.param(LOAD_N, id=f"{LOAD_N}-files", marks=pytest.mark.slow)],
)
def test_many_files_at_once(
    count: int, fast_config: Any, standin: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """``count`` files enqueued in one go: every one ingested exactly once; RSS start/end reported."""
    # Given a backlog of `count` files enqueued at once
    files = make_files(data_root, count)
    config = fast_config(logging={"logging_level": "WARNING"})
    started = time.monotonic()
    enqueue_all(config, files)
    enqueued_s = time.monotonic() - started
    # When one worker (2 processes) works through it
    worker = start_worker(config)
    assert worker.process is not None
    start_rss = rss_kib(worker.process.pid)
    began = time.monotonic()
    wait_for(lambda: settled(config, count), timeout=120 + count * 0.5, what=f"{count} files to settle")
    elapsed = time.monotonic() - began
    end_rss = rss_kib(worker.process.pid)
    # Then none is lost or doubled, and memory stays within a small factor of the start
    result = tally(standin, files)
    figures(
        result,
        rss_start_mib=round(start_rss / 1024, 1),
        rss_end_mib=round(end_rss / 1024, 1),
        files_per_s=round(count / elapsed, 1),
        enqueue_s=round(enqueued_s, 1),
    )
    print(
        f"{count} files: enqueue {enqueued_s:.1f} s, ingest {elapsed:.1f} s ({count / elapsed:.1f}/s), "
        f"RSS {start_rss / 1024:.0f} -> {end_rss / 1024:.0f} MiB"
    )
    assert not failures(config)
    assert (result.lost, result.duplicated) == (0, 0)
    assert result.datasets == result.blocks == count
    assert end_rss < 3 * start_rss, (start_rss, end_rss)

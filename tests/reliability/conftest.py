"""Reliability suite: real redis-server, real prefork workers, the SciCat stand-in with faults.

The worker fixtures come from ``offline_ingestor.testing.pytest_plugin``; the shared
helpers from ``runs.py``. Every test that ingests files reports its figures (files, lost,
duplicated) with :func:`figures`, which ``scripts/reliability.py`` turns into the table in
RELIABILITY.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offline_ingestor.testing.processes import WorkerProcess
from offline_ingestor.testing.pytest_plugin import running_workers
from reliability.runs import Tally
from reliability.sentinels import sentinel_set  # noqa: F401  (the Sentinel fixture, for every case)


@pytest.fixture
def figures(record_property: Any) -> Any:
    """Record a case's figures for the reliability table (junit properties)."""

    def record(result: Tally | None = None, **extra: Any) -> None:
        if result is not None:
            record_property("files", result.files)
            record_property("lost", result.lost)
            record_property("duplicated", result.duplicated)
        for name, value in extra.items():
            record_property(name, value)

    return record


@pytest.fixture
def fast_config(queue_config: Any) -> Any:
    """A worker config with the shortest timings the settings allow (VT 15 s, tiny backoff)."""

    def write(**sections: Any) -> Path:
        queue = {
            "visibility_timeout_s": 15,
            "task_time_limit_s": 12,
            "retry_backoff_s": 0.1,
            "retry_backoff_max_s": 1,
            **sections.pop("queue", {}),
        }
        return queue_config(queue=queue, **sections)  # type: ignore[no-any-return]

    return write


@pytest.fixture
def start_worker(tmp_path: Path, queue_config: Any) -> Iterator[Callable[..., WorkerProcess]]:
    """Like tests/worker's fixture, but workers are SIGKILLed at teardown (saves ~3 s a test)."""
    with running_workers(tmp_path, queue_config, kill_at_end=True) as start:
        yield start

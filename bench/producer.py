"""A producer process: ``python -m bench.producer CONFIG LIST`` enqueues every path in LIST.

Prints files per second. A process of its own per run, like a real producer, so that each
run's Celery app talks to that run's Redis (an app keeps its broker pool for its lifetime).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from offline_ingestor.config import load_config
from offline_ingestor.ingest.job import new_job
from offline_ingestor.producer import submit_job
from offline_ingestor.queue.job_store import JobStore


def main() -> None:
    config = load_config(sys.argv[1])
    paths = Path(sys.argv[2]).read_text().split("\n")
    store = JobStore.for_config(config)
    started = time.perf_counter()
    for path in paths:
        result = submit_job(new_job(path, config.ingestion.allowed_data_roots), config, store=store)
        if not result.queued:
            raise SystemExit(f"{path}: {result.status}")
    print(len(paths) / (time.perf_counter() - started))


if __name__ == "__main__":
    main()

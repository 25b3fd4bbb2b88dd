"""Turn cProfile dumps of worker processes into "where the time goes" tables."""

from __future__ import annotations

import pstats
from collections import defaultdict
from pathlib import Path
from typing import Any

#: (path fragment, bucket). First match wins; builtins go to their main caller's bucket.
BUCKETS = (
    ("offline_ingestor/job_store", "Redis: job records (JobStore)"),
    ("site-packages/redis/", "Redis: redis-py client"),
    ("requests/", "SciCat HTTP (requests/urllib3/http.client)"),
    ("urllib3/", "SciCat HTTP (requests/urllib3/http.client)"),
    ("http/client", "SciCat HTTP (requests/urllib3/http.client)"),
    ("h5py/", "h5py / HDF5"),
    ("numpy/", "h5py / HDF5"),
    ("offline_ingestor/schema", "schema engine (variables, rendering)"),
    ("structlog/", "logging (structlog, JSON)"),
    ("json/", "JSON (de)serialisation"),
    ("offline_ingestor/", "our steps and tasks (own code)"),
    ("billiard/", "Celery/kombu/billiard (framework)"),
    ("celery/", "Celery/kombu/billiard (framework)"),
    ("kombu/", "Celery/kombu/billiard (framework)"),
    ("vine/", "Celery/kombu/billiard (framework)"),
)
IDLE = {"poll", "select", "read", "epoll"}


def _bucket(filename: str) -> str:
    return next((bucket for fragment, bucket in BUCKETS if fragment in filename), "other (stdlib etc.)")


def breakdown(paths: list[Path]) -> dict[str, Any]:
    """Own time per bucket (builtins charged to their biggest caller); idle waits apart."""
    stats = pstats.Stats(*map(str, paths))
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, own, _, callers) in raw.items():
        if filename == "~":
            caller = max(callers.items(), key=lambda item: item[1][3], default=None)
            bucket = _bucket(caller[0][0]) if caller else "other (stdlib etc.)"
            if bucket.startswith("Celery") and any(word in name for word in IDLE):
                bucket = "idle: waiting for work (pool/event loop)"
        else:
            bucket = _bucket(filename)
        totals[bucket] += own
    busy = sum(value for key, value in totals.items() if not key.startswith("idle"))
    return {
        "busy_s": round(busy, 2),
        "buckets": {
            key: {
                "seconds": round(value, 2),
                "share_of_busy": None if key.startswith("idle") or not busy else round(value / busy, 3),
            }
            for key, value in sorted(totals.items(), key=lambda item: -item[1])
        },
    }


def top_functions(paths: list[Path], count: int = 15) -> list[str]:
    """The ``count`` functions with most own time, as ``pstats`` prints them."""
    stats = pstats.Stats(*map(str, paths))
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: -item[1][2],
    )[:count]:
        short = filename.split("site-packages/")[-1].split("/src/")[-1]
        rows.append(f"{own:8.2f}s own {cumulative:8.2f}s cum {calls:8d} calls  {short}:{line}({name})")
    return rows

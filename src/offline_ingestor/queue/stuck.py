"""Stuck files, for ``offline-ingestor status``: queued or running longer than a bound, and why."""

from __future__ import annotations

import time
from typing import Any

from .job_store import JobStore, Record

__all__ = ["enqueued_age_s", "stuck_files"]


def enqueued_age_s(record: Record, now: float) -> float:
    """Seconds since the record's ``enqueued_at`` (0 when it has none)."""
    stamp = record.fields.get("enqueued_at") or record.fields.get("updated_at") or ""
    try:
        then = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return 0.0
    return max(0.0, now - then)


def stuck_files(store: JobStore, stuck_after_s: float) -> list[dict[str, Any]]:
    """Every queued or running file older than ``stuck_after_s``, oldest first, with why.

    ``why`` names what holds it: a live process running it (a long step), a dead holder (the
    reconciler or ``enqueue --force`` takes it over), or no holder (waiting for a worker, or
    for the reconciler's resume).
    """
    now = time.time()
    found = []
    for record in store.records():
        if record.state not in ("queued", "running"):
            continue
        age = enqueued_age_s(record, now)
        if age <= stuck_after_s:
            continue
        chain, holder, alive = store.lease(record.key)
        if alive:
            why = f"held by live process {holder}"
        elif holder:
            why = f"holder {holder} is dead: the reconciler resumes it"
        elif chain:
            why = "between steps: its next message waits for a worker"
        else:
            why = "no lease: waiting for a worker"
        found.append(
            {
                "key": record.key,
                "file": record.fields.get("file", ""),
                "state": record.state,
                "step": record.fields.get("step", ""),
                "age_s": round(age, 1),
                "resumes": int(record.fields.get("resumes", "0") or 0),
                "why": why,
            }
        )
    return sorted(found, key=lambda item: -float(item["age_s"]))

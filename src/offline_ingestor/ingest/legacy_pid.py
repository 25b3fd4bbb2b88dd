"""The pids of datasets catalogued before issue 12, and how reruns find them (issue 25, item 5).

Before issue 12 a derived pid (a schema without ``pid``, or ``generate_dataset_pid``) came
from the queue key of a file without a writer's job id: ``uuid5(namespace, "f-" + sha256(
path, size, mtime))``. It now comes from the path alone, so a rerun of such a file sends
another pid and would catalogue it a second time. ``offline-ingestor audit`` finds them
(class ``legacy-pid``) while the file's size and mtime are still those it was catalogued
with; ``audit --map-legacy-pids`` keeps each old pid in the pid memo (``ingest/pid_memo.py``),
where ``post-dataset`` looks after the new pid's 404. Run it once, before any rerun.
"""

from __future__ import annotations

import hashlib
import os
import uuid

from .steps import PID_NAMESPACE

__all__ = ["derived_pid", "legacy_pid"]


def derived_pid(name: str, prefix: str) -> str:
    """The pid ``build-dataset`` derives from a file's name (job id, else path) today."""
    derived = str(uuid.uuid5(PID_NAMESPACE, name))
    prefix = prefix.rstrip("/")
    return f"{prefix}/{derived}" if prefix else derived


def legacy_pid(file: str, sent_pid: str | None, job_id: str | None, prefix: str) -> str | None:
    """The pid the code before issue 12 derived for ``file``, when today's is derived too.

    None when the pid is not derived (a schema's own pid, a writer's job id: unchanged since)
    or the file cannot be stated. Computed from the file's size and mtime now: a file touched
    since it was catalogued is not matched (the audit then shows its old dataset as an orphan).
    """
    if job_id or not sent_pid or sent_pid != derived_pid(file, prefix):
        return None
    try:
        info = os.stat(file)
    except OSError:
        return None
    # Exactly what job.ingest_key was then (resolved path, size, mtime in ns).
    identity = f"{file}\0{info.st_size}\0{info.st_mtime_ns}"
    key = "f-" + hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return derived_pid(key, prefix)

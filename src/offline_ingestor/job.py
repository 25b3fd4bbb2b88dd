"""A job: one file to ingest, its idempotency key, and the state the steps add to it.

The job is a plain JSON-able dict so that the Celery tasks can keep it in Redis and
``ingest-now`` can keep it in memory, running the same step functions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, TypedDict

from .config import Config
from .done_writing import DoneWriting, read_done_writing
from .errors import InputFileError

__all__ = ["Job", "check_data_root", "ingest_key", "new_job", "read_message_file"]


class Job(TypedDict, total=False):
    """The job document: what the producer knows, then what each step adds.

    Kept in memory by ``ingest-now`` and in Redis (``JobStore``) by the worker, so every
    value is JSON-able. ``steps.STEP_OUTPUT`` names the key each step adds.
    """

    # From the producer (``new_job``).
    file: str
    key: str
    job_id: str | None  # the file writer's job id, when known
    message_file: str | None
    # select-schema
    schema_id: str
    # extract: stable per file, so retries and reruns render the same values
    run_id: str
    now: str
    variables: dict[str, dict[str, Any]]
    sample_ids: list[str]
    # build-dataset
    dataset: dict[str, Any]
    origdatablock: dict[str, Any]
    # post-dataset
    pid: str
    dataset_created: bool
    requested_pid: str  # the pid we sent, when SciCat stored the dataset under another
    # post-origdatablock
    origdatablock_id: str | None
    origdatablock_created: bool
    verifiable: bool  # False: attached by an account that cannot read the dataset back
    totals_repaired: bool  # the dataset's size/numberOfFiles were PATCHed from its blocks


def ingest_key(path: Path, job_id: str | None = None) -> str:
    """The file writer's job id when given, else a hash of resolved path, size and mtime."""
    if job_id:
        return job_id
    try:
        stat = path.stat()
        identity = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    except OSError:
        identity = f"{path}\0missing"
    return "f-" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def read_message_file(path: str, nexus_file: Path, config: Config) -> DoneWriting:
    """The file writer's "done writing" message: job id and file to list (done_writing.py)."""
    return read_done_writing(path, nexus_file, config)


def check_data_root(path: Path, config: Config) -> None:
    """Refuse files outside ``ingestion.allowed_data_roots`` (when any are set)."""
    roots = [Path(os.path.realpath(root)) for root in config.ingestion.allowed_data_roots]
    if roots and not any(path == root or root in path.parents for root in roots):
        raise InputFileError(
            f"refused: {path} is outside the allowed data roots ({', '.join(map(str, roots))})"
        )


def new_job(
    path: str | os.PathLike[str],
    config: Config,
    *,
    job_id: str | None = None,
    message_file: str | None = None,
) -> Job:
    """Start a job for ``path``: resolve it (symlinks too), check roots, derive its key."""
    resolved = Path(os.path.realpath(os.path.expanduser(os.fspath(path))))
    check_data_root(resolved, config)
    if message_file:
        message = read_message_file(message_file, resolved, config)
        job_id = job_id or message.job_id
        message_file = message.listed_file
    return {
        "file": str(resolved),
        "job_id": job_id,
        "key": ingest_key(resolved, job_id),
        "message_file": message_file or None,
    }

"""A job: one file to ingest, its idempotency key, and the state the steps add to it.

The job is a plain JSON-able dict so that the Celery tasks can keep it in Redis and
``ingest-now`` can keep it in memory, running the same step functions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ..config_paths import within_roots
from ..errors import InputFileError
from ..files.done_writing import DoneWriting, Warner, read_done_writing_within

if TYPE_CHECKING:  # the drop-in's fast path makes jobs without pydantic (dropin/fast.py)
    from ..config import Config

__all__ = [
    "Job",
    "check_within_roots",
    "ingest_key",
    "new_job",
    "printable_path",
    "read_message_file",
    "scicat_identity",
]


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
    identity: dict[str, Any]  # device, inode, size, mtime: later steps check it is the same file
    # extract: stable per file, so retries and reruns render the same values
    run_id: str
    now: str
    variables: dict[str, dict[str, Any]]
    sample_ids: list[str]
    new_samples: list[dict[str, Any]]  # create_missing: sampleId, name, proposalId (ingest/samples.py)
    # build-dataset
    dataset: dict[str, Any]
    origdatablock: dict[str, Any]
    # post-dataset
    pid: str
    dataset_created: bool
    requested_pid: str  # the pid we sent, when SciCat stored the dataset under another
    pid_unfindable: bool  # ... and a rerun could not find it there (ingest/pid_memo.py)
    # size/numberOfFiles of a dataset found in SciCat, so that post-origdatablock can check
    # them against its blocks without reading the dataset again
    dataset_totals: dict[str, int]
    # post-origdatablock
    origdatablock_id: str | None
    origdatablock_created: bool
    verifiable: bool  # False: attached by an account that cannot read the dataset back
    totals_repaired: bool  # the dataset's size/numberOfFiles were PATCHed from its blocks
    # post-job (ingest/jobs.py): None when the schema has no scicat_job section
    scicat_job_id: str | None
    scicat_job_created: bool
    # requeue of a file that failed at post-job: the forced claim keeps its done steps
    keep_done_steps: bool
    # Set by the step executor for one write-step execution, never saved (ingest/steps.py).
    first_write: bool


def ingest_key(path: Path, job_id: str | None = None) -> str:
    """The file writer's job id when given, else a hash of what makes this file this file.

    Resolved path, size and mtime, plus device, inode and ctime: a different file put at the
    same path with the same size and mtime (``touch -d``, a restore) is not "already done".
    Only the queue uses this key; SciCat's identity is :func:`scicat_identity`.
    """
    if job_id:
        return job_id
    name = os.fsencode(path)
    try:
        info = path.stat()
        identity = b"\0".join(
            [
                name,
                *(
                    str(part).encode()
                    for part in (info.st_size, info.st_mtime_ns, info.st_dev, info.st_ino, info.st_ctime_ns)
                ),
            ]
        )
    except OSError:
        identity = name + b"\0missing"
    return "f-" + hashlib.sha256(identity).hexdigest()[:32]


def scicat_identity(job: Job) -> str:
    """What a dataset's derived pid is made from: the writer's job id, else the file's path.

    Never size or mtime: touching or rewriting a file, or enqueueing it before it existed,
    must find the same dataset again rather than create a second one.
    """
    return str(job.get("job_id") or job["file"])


def printable_path(path: str | os.PathLike[str]) -> str:
    """A file name as text that can always be printed (undecodable bytes as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_message_file(path: str, nexus_file: Path, config: Config) -> DoneWriting:
    """The file writer's "done writing" message: job id and file to list (files/done_writing.py)."""
    return read_done_writing_within(path, nexus_file, config.ingestion.allowed_data_roots)


def check_within_roots(path: Path, allowed_roots: Sequence[str]) -> None:
    """Refuse a resolved path outside ``ingestion.allowed_data_roots`` (when any are set)."""
    if not within_roots(path, allowed_roots):
        roots = ", ".join(os.path.realpath(root) for root in allowed_roots)
        raise InputFileError(f"refused: {path} is outside the allowed data roots ({roots})")


def _check_is_file(path: Path) -> None:
    if not os.path.exists(path):
        raise InputFileError(f"refused: {path} does not exist")
    if not os.path.isfile(path):
        raise InputFileError(f"refused: {path} is not a file")


def new_job(
    path: str | os.PathLike[str],
    allowed_roots: Sequence[str],
    *,
    must_exist: bool = True,
    job_id: str | None = None,
    message_file: str | None = None,
    log: Warner | None = None,
) -> Job:
    """The one admission check: resolve ``path`` (symlinks too), refuse it or start its job.

    Refused with ``InputFileError("refused: …")``: a name that is not UTF-8, a path outside
    ``allowed_roots`` (``ingestion.allowed_data_roots``; none: anywhere), with ``must_exist``
    a path that is missing or not a regular file, and a bad "done writing" message file.
    Every door (CLI, ``submit`` task, drop-in, ``ingest-now``, audit) comes through here;
    the steps check the roots again for jobs that come back from Redis.
    """
    resolved = Path(os.path.realpath(os.path.expanduser(os.fspath(path))))
    try:
        os.fspath(resolved).encode("utf-8")
    except UnicodeEncodeError:
        # SciCat stores paths as JSON text; a name that is not UTF-8 cannot be catalogued as is.
        raise InputFileError(f"refused: file name is not valid UTF-8: {printable_path(resolved)}") from None
    check_within_roots(resolved, allowed_roots)
    if must_exist:
        _check_is_file(resolved)
    if message_file:
        message = read_done_writing_within(message_file, resolved, allowed_roots, log)
        job_id = job_id or message.job_id
        message_file = message.listed_file
    return {
        "file": str(resolved),
        "job_id": job_id,
        "key": ingest_key(resolved, job_id),
        "message_file": message_file or None,
    }

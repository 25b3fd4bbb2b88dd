"""A job: one file to ingest, its idempotency key, and the state the steps add to it.

The job is a plain JSON-able dict so that the Celery tasks can keep it in Redis and
``ingest-now`` can keep it in memory, running the same step functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .config import Config
from .errors import InputFileError

__all__ = [
    "Job",
    "check_data_root",
    "ingest_key",
    "new_job",
    "printable_path",
    "read_message_file",
    "scicat_identity",
]

Job = dict[str, Any]


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


def read_message_file(path: str) -> dict[str, Any]:
    """The file writer's "done writing" message (JSON); ``job_id`` is what we use."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read done-writing message file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputFileError(f"done-writing message file {path} is not a JSON object")
    return data


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
    try:
        os.fspath(resolved).encode("utf-8")
    except UnicodeEncodeError:
        # SciCat stores paths as JSON text; a name that is not UTF-8 cannot be catalogued as is.
        raise InputFileError(f"refused: file name is not valid UTF-8: {printable_path(resolved)}") from None
    check_data_root(resolved, config)
    if message_file and not job_id:
        job_id = str(read_message_file(message_file).get("job_id") or "") or None
    return {
        "file": str(resolved),
        "job_id": job_id,
        "key": ingest_key(resolved, job_id),
        "message_file": message_file or None,
    }

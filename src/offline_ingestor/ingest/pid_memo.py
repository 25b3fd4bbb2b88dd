"""Where a rerun finds a dataset SciCat stored under another pid than the one it was sent.

A deployment or proxy that rewrites or prefixes pids answers the dataset POST with 201 and
its own pid. A rerun GETs the pid it sends (404) and, with the job-id search off, would create
a second dataset. The first run knows (the answer's pid differs), so it keeps the pid SciCat
returned where a rerun looks, and ``post-dataset`` looks there after the 404:

* ``ingest-now`` and the drop-in: a small JSON file beside the file's hash file
  (``<ingestor_files_directory>/<stem>.scicat-pid``, only with ``save_file_hash``: a data tree
  we may not write hash files into gets none), see :class:`FileMemo`;
* the worker: Redis (``queue/pid_memo.py``), falling back to reading such a file.

When the pid cannot be kept, the file's ingestion ends in a conflict instead of exit 0
(``ingest/writes.py``): nothing would stop a rerun from duplicating it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from ..config import FileHandlingOptions
from ..logs import get_logger
from .job import Job

__all__ = ["MEMO_EXTENSION", "FileMemo", "PidMemo", "memo_path"]

log = get_logger("offline_ingestor.pid_memo")

#: The memo file's extension (the audit's walk skips these files, as it skips hash files).
MEMO_EXTENSION = "scicat-pid"


class PidMemo(Protocol):
    """Keeps and recalls the pid SciCat stored a file's dataset under."""

    def recall(self, job: Job, sent_pid: str) -> str | None:
        """The pid SciCat returned for ``sent_pid`` of this file, if one was kept."""

    def keep(self, job: Job, sent_pid: str, stored_pid: str) -> bool:
        """Keep ``stored_pid`` for a rerun; False when it could not be kept."""


def memo_path(data_file: Path, options: FileHandlingOptions) -> Path:
    """``<ingestor_files_directory>/<stem>.scicat-pid``: beside the data file's hash file."""
    directory = Path(options.ingestor_files_directory).expanduser()
    if not directory.is_absolute():
        directory = Path(os.path.normpath(data_file.parent / directory))
    return directory / f"{data_file.stem}.{MEMO_EXTENSION}"


class FileMemo:
    """The memo of ``ingest-now`` and the drop-in: a JSON file beside the hash file."""

    def __init__(self, options: FileHandlingOptions, *, writable: bool = True) -> None:
        self.options = options
        #: False for a reader only (the worker reads what a command kept, writes to Redis).
        self.writable = writable and options.save_file_hash

    def recall(self, job: Job, sent_pid: str) -> str | None:
        path = memo_path(Path(job["file"]), self.options)
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(kept, dict) or kept.get("sent_pid") != sent_pid or kept.get("file") != job["file"]:
            return None  # another file's (same stem) or another pid's: not ours
        pid = kept.get("pid")
        return pid if isinstance(pid, str) and pid else None

    def keep(self, job: Job, sent_pid: str, stored_pid: str) -> bool:
        if not self.writable:
            return False
        path = memo_path(Path(job["file"]), self.options)
        text = json.dumps({"file": job["file"], "sent_pid": sent_pid, "pid": stored_pid})
        temp = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Whole or absent: a rerun must never read half a pid.
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            if temp:
                Path(temp).unlink(missing_ok=True)
            log.warning("pid_memo.not_kept", file=job["file"], dataset_pid=stored_pid, path=str(path),
                        error=exc.strerror)  # fmt: skip
            return False
        return True

"""The file writer's "done writing" message file that the online ingestor passes along.

Upstream's online ingestor writes it with ``json.dump(message)`` where ``message`` is
``streaming_data_types.finished_writing_wrdn.WritingFinished``, a NamedTuple, so the file
holds a JSON **array** ``[service_id, job_id, error_encountered, file_name, metadata,
message]``. Other producers write an object with the same field names. We accept both.

The message is a hint, not an input we depend on: it gives the writer's job id (our
idempotency key) and says whether the writer failed. A message we cannot use (unreadable,
not JSON, an unknown shape, a FIFO, too big) never fails the file: we warn and fall back to
the path-based key. Two things do refuse the file:

* a message file outside ``ingestion.allowed_data_roots``: the same rule as for the data
  file, because the message file is read, hashed and listed in the origdatablock;
* ``error_encountered: true``: the file writer says the file is broken. Upstream's online
  ingestor skips such messages; a message that reaches us anyway is refused with the
  writer's reason. After checking the file, ingest it by hand without the message
  (``offline-ingestor ingest-now FILE``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..config_paths import within_roots
from ..errors import InputFileError

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "MAX_MESSAGE_FILE_BYTES",
    "WRDN_FIELDS",
    "DoneWriting",
    "FileWriterFailed",
    "Warner",
    "read_done_writing",
    "read_done_writing_within",
]


class Warner(Protocol):
    """What the reader logs its warnings with (a structlog logger, or the drop-in's lazy one)."""

    def warning(self, event: str, **fields: Any) -> Any: ...


#: Field order of ``streaming_data_types.finished_writing_wrdn.WritingFinished``.
WRDN_FIELDS = ("service_id", "job_id", "error_encountered", "file_name", "metadata", "message")

#: A real message is a few hundred bytes (its ``metadata`` a few KB at most); anything
#: larger is not a message, and reading it whole would cost memory and time.
MAX_MESSAGE_FILE_BYTES = 1 << 20


class FileWriterFailed(InputFileError):
    """The done-writing message says the file writer failed (``error_encountered: true``)."""


@dataclass(frozen=True)
class DoneWriting:
    """What we take from a message file: the job id and the file to list (or neither)."""

    #: The file writer's job id, or None when the message gave none we may use.
    job_id: str | None
    #: The message file to list in the origdatablock; None when it is not a regular file
    #: we may read.
    listed_file: str | None


def _read_capped(path: Path) -> bytes:
    """The file's bytes: a regular file of at most MAX_MESSAGE_FILE_BYTES, never blocking."""
    # O_NONBLOCK: opening a FIFO for reading would wait for a writer forever.
    # O_NOFOLLOW: the path is already resolved; a symlink here was swapped in after that.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > MAX_MESSAGE_FILE_BYTES:
            raise ValueError(f"{info.st_size} bytes, more than the {MAX_MESSAGE_FILE_BYTES} allowed")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_MESSAGE_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_MESSAGE_FILE_BYTES:
        raise ValueError(f"more than {MAX_MESSAGE_FILE_BYTES} bytes")
    return data


def parse_message(data: bytes) -> dict[str, Any]:
    """The message as a dict of WRDN fields, from the array or the object form."""
    parsed = json.loads(data.decode("utf-8"))
    if isinstance(parsed, list):
        if len(parsed) != len(WRDN_FIELDS):
            raise ValueError(f"a JSON array of {len(parsed)} items, not the {len(WRDN_FIELDS)} WRDN fields")
        return dict(zip(WRDN_FIELDS, parsed, strict=True))
    if isinstance(parsed, dict):
        return parsed
    raise ValueError(f"JSON {type(parsed).__name__}, not an array or object")


def _same_file(named: str, nexus_file: Path) -> bool:
    return os.path.realpath(named) == str(nexus_file)


def read_done_writing(message_file: str, nexus_file: Path, config: Config) -> DoneWriting:
    """Read ``message_file`` for the (resolved) ``nexus_file``; see the module docstring."""
    return read_done_writing_within(message_file, nexus_file, config.ingestion.allowed_data_roots)


def read_done_writing_within(
    message_file: str, nexus_file: Path, allowed_roots: Sequence[str], log: Warner | None = None
) -> DoneWriting:
    """:func:`read_done_writing` given ``ingestion.allowed_data_roots`` itself (no Config)."""
    resolved = Path(os.path.realpath(os.path.expanduser(message_file)))
    if not within_roots(resolved, allowed_roots):
        raise InputFileError(
            f"refused: done-writing message file {resolved} is outside the allowed data roots "
            f"({', '.join(allowed_roots)})"
        )
    log = log or _LazyWarner()
    try:
        data = _read_capped(resolved)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning(
            "message_file.unusable", message_file=str(resolved), reason=reason, fallback="path-based key"
        )
        return DoneWriting(job_id=None, listed_file=None)
    try:
        message = parse_message(data)
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning(
            "message_file.unreadable", message_file=str(resolved), reason=str(exc), fallback="path-based key"
        )
        return DoneWriting(job_id=None, listed_file=str(resolved))
    if message.get("error_encountered") is True:
        reason = message.get("message") or "no reason given"
        raise FileWriterFailed(
            f"refused: the file writer reported an error for {nexus_file} (error_encountered: true in "
            f"{resolved}: {reason}); check the file, then ingest it without the message: "
            f"offline-ingestor ingest-now {nexus_file}"
        )
    job_id = message.get("job_id")
    job_id = job_id if isinstance(job_id, str) and job_id else None
    named = message.get("file_name")
    if isinstance(named, str) and named and not _same_file(named, nexus_file):
        if Path(named).name != nexus_file.name:
            # The message is about another file: its job id would make this file look done
            # (or that one), so it must not become this file's key.
            log.warning(
                "message_file.other_file",
                message_file=str(resolved),
                message_file_name=named,
                file=str(nexus_file),
                writer_job_id=job_id,
                fallback="path-based key",
            )
            return DoneWriting(job_id=None, listed_file=str(resolved))
        # Same name in another folder: the writer and we usually see different mount points.
        log.warning(
            "message_file.path_differs",
            message_file=str(resolved),
            message_file_name=named,
            file=str(nexus_file),
            writer_job_id=job_id,
        )
    if job_id is None:
        log.warning("message_file.no_job_id", message_file=str(resolved), fallback="path-based key")
    return DoneWriting(job_id=job_id, listed_file=str(resolved))


class _LazyWarner:
    """This module's structlog logger, imported at the first warning."""

    def warning(self, event: str, **fields: Any) -> Any:
        # Imported on a warning only: the drop-in's fast path reads messages without structlog.
        import structlog

        return structlog.get_logger("offline_ingestor.done_writing").warning(event, **fields)

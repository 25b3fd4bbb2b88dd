"""A durable local spool for enqueue requests that Redis could not take.

The online ingestor never retries a drop-in that exits non-zero, so a file finished while
Redis is down, restarting, full or failing over would never be ingested. Instead the producer
writes the request here (one JSON file per request, written to a temporary name, fsynced,
renamed, the folder fsynced: a power cut leaves either the whole request or nothing) and
exits 0. The drop-in's fast path (``dropin/fast.py``) spools every request first. The next
producer call, the worker's flusher (it polls every 0.5 s) and ``offline-ingestor spool
flush`` enqueue spooled requests, oldest first, once Redis answers; each file is removed
only after its request is in Redis. The idempotency key makes a request enqueued
twice (a flush cut short before the unlink) a no-op.

Files: ``<spool_dir>/<time_ns>-<sha256(key)[:16]>.json`` holding
``{"job": {...}, "force": bool, "claim": str, "spooled_at": float, "reason": str}``.
Unreadable files are moved to ``<spool_dir>/bad/`` and reported, never retried blindly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import IngestError, SpoolFull, is_transient

if TYPE_CHECKING:  # the drop-in's fast path writes requests with the standard library only
    from ..config import Config
    from ..ingest.job import Job

__all__ = ["FLUSHER_FILE", "FlushResult", "Spool", "SpooledRequest"]

#: A flushing worker touches this file in the spool folder every poll (see worker/spool_flusher.py);
#: its text names the Redis the worker sends to (fast_dropin.broker_fingerprint).
FLUSHER_FILE = ".flusher"


@dataclass(frozen=True)
class SpooledRequest:
    """One request waiting in the spool."""

    path: Path
    job: Job
    force: bool
    claim: str
    spooled_at: float


@dataclass
class FlushResult:
    """What a flush did: requests enqueued (with their outcome), left, moved to ``bad/``."""

    sent: list[tuple[SpooledRequest, str]] = field(default_factory=list)
    left: int = 0
    bad: list[Path] = field(default_factory=list)
    #: Why the flush stopped early (Redis still unavailable), if it did.
    stopped: str = ""
    #: True when another process was flushing: nothing was tried.
    busy: bool = False
    #: Sent requests whose file could not be removed (path: reason); they will be sent again.
    stuck: list[str] = field(default_factory=list)


class Spool:
    """The spool folder; cheap to construct, nothing is created until a request is written."""

    def __init__(self, directory: Path, max_files: int = 100_000) -> None:
        self.directory = directory
        self.max_files = max_files

    @classmethod
    def for_config(cls, config: Config) -> Spool | None:
        """The configured spool, or None when ``queue.spool_dir`` is empty (spool off)."""
        if not config.queue.spool_dir:
            return None
        return cls(config.resolve(config.queue.spool_dir), config.queue.spool_max_files)

    # -- writing ------------------------------------------------------------------------------

    def put(self, job: Job, *, force: bool = False, claim: str = "", reason: str = "") -> SpooledRequest:
        """Write one request durably; :class:`SpoolFull` when ``max_files`` are waiting."""
        self.directory.mkdir(parents=True, exist_ok=True)
        waiting = self.count()
        if waiting >= self.max_files:
            raise SpoolFull(
                f"spool full: {waiting} requests wait in {self.directory} (queue.spool_max_files "
                f"{self.max_files}) and Redis cannot take more ({reason})",
                file=job.get("file"),
            )
        now = time.time()
        name = f"{time.time_ns():020d}-{hashlib.sha256(job['key'].encode()).hexdigest()[:16]}.json"
        body = {"job": job, "force": force, "claim": claim, "spooled_at": now, "reason": reason}
        target = self.directory / name
        temporary = self.directory / f".tmp-{os.getpid()}-{name}"
        try:
            with temporary.open("x", encoding="utf-8") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            _fsync_dir(self.directory)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise SpoolFull(f"cannot write to spool {self.directory}: {exc}", file=job.get("file")) from None
        return SpooledRequest(target, job, force, claim, now)

    # -- reading ------------------------------------------------------------------------------

    def paths(self) -> list[Path]:
        """Waiting request files, oldest first."""
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(self.directory)
                if entry.name.endswith(".json") and not entry.name.startswith(".") and entry.is_file()
            )
        except FileNotFoundError:
            return []
        return [self.directory / name for name in names]

    def count(self) -> int:
        return len(self.paths())

    def bad_count(self) -> int:
        try:
            return sum(1 for _ in os.scandir(self.directory / "bad"))
        except FileNotFoundError:
            return 0

    def has_pending(self) -> bool:
        """Whether any request waits (stops at the first one: cheap on every enqueue)."""
        try:
            with os.scandir(self.directory) as entries:
                return any(e.name.endswith(".json") and not e.name.startswith(".") for e in entries)
        except FileNotFoundError:
            return False

    def read(self, path: Path) -> SpooledRequest:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        job = data["job"]
        if (
            not isinstance(job, dict)
            or not isinstance(job.get("key"), str)
            or not isinstance(job.get("file"), str)
        ):
            raise ValueError("no job with key and file")
        return SpooledRequest(
            path,
            cast("Job", job),
            bool(data.get("force")),
            str(data.get("claim") or ""),
            float(data.get("spooled_at") or 0),
        )

    def oldest_age_s(self) -> float | None:
        paths = self.paths()
        if not paths:
            return None
        try:
            return max(0.0, time.time() - paths[0].stat().st_mtime)
        except FileNotFoundError:
            return None

    # -- the local flusher --------------------------------------------------------------------

    def mark_flusher(self, broker: str) -> None:
        """Say that a worker flushing to ``broker`` polls this folder (touched every poll)."""
        path = self.directory / FLUSHER_FILE
        try:
            if path.read_text(encoding="utf-8") == broker:
                os.utime(path)
                return
        except OSError:
            pass
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".flusher-{os.getpid()}.tmp"
        temporary.write_text(broker, encoding="utf-8")
        os.replace(temporary, path)

    def flusher_alive(self, broker: str, max_age_s: float) -> bool:
        """Whether a worker sending to ``broker`` polled this folder within ``max_age_s``."""
        path = self.directory / FLUSHER_FILE
        try:
            age = time.time() - path.stat().st_mtime
            return age <= max_age_s and path.read_text(encoding="utf-8") == broker
        except OSError:
            return False

    # -- flushing -----------------------------------------------------------------------------

    def flush(self, submit: Callable[[SpooledRequest], str], *, limit: int | None = None) -> FlushResult:
        """Enqueue waiting requests oldest first with ``submit`` (which returns a status).

        One flusher at a time (a lock file; a second caller returns ``busy``). An
        :class:`IngestError` that is transient (Redis still cannot take writes) stops the
        flush with the rest left in place; any other error propagates, leaving the file.
        """
        result = FlushResult()
        with self._lock() as locked:
            if not locked:
                result.busy = True
                result.left = self.count()
                return result
            paths = self.paths()
            for index, path in enumerate(paths):
                if limit is not None and len(result.sent) >= limit:
                    result.left = len(paths) - index
                    break
                try:
                    request = self.read(path)
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    result.bad.append(self._quarantine(path, exc))
                    continue
                try:
                    status = submit(request)
                except IngestError as exc:
                    if is_transient(exc):
                        result.stopped = str(exc)
                        result.left = len(paths) - index
                        break
                    raise
                result.sent.append((request, status))
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    # Sent, but it stays (a folder the flusher may not write): later flushes
                    # send it again as a no-op ("already queued"); the rest must not wait on it.
                    result.stuck.append(f"{path}: {exc.strerror or exc}")
            if result.sent:
                _fsync_dir(self.directory)
        return result

    @contextlib.contextmanager
    def _lock(self) -> Iterator[bool]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = (self.directory / ".flush.lock").open("a")
        except OSError:
            yield False
            return
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _quarantine(self, path: Path, exc: BaseException) -> Path:
        bad = self.directory / "bad"
        bad.mkdir(exist_ok=True)
        target = bad / path.name
        with contextlib.suppress(OSError):
            os.replace(path, target)
        import structlog  # here, not at the top: producers writing requests never need it

        structlog.get_logger("offline_ingestor.spool").error(
            "spool.bad_request", file=str(path), moved_to=str(target), error=f"{type(exc).__name__}: {exc}"
        )
        return target


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

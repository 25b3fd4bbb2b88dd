"""Read a file's metadata in a child process, so that libhdf5 crashing cannot end the caller.

A few hostile files make libhdf5 itself crash (a string virtual dataset whose source stores
strings differently: SIGSEGV) or run away in memory or time. The worker survives that
(Celery replaces the child), but ``ingest-now`` and the drop-in would die with exit 139 and
no word. Here the schema's NeXus paths are read by ``python -m offline_ingestor.files.nexus_child``
under an address-space limit and a hard timeout, and any death becomes one
:class:`NexusReadError` naming the file.

Protocol: JSON on stdin ``{file, paths, limits, identity}``, JSON on stdout
``{"results": {path: {"values": [...]} | {"error": "..."}}}`` or ``{"fatal": {...}}``.

The child loads h5py and numpy (about 200 ms of CPU, most of the child's cost) before it reads
its request, so a command that knows it will read a file starts the child early
(:func:`start_reader`) and that import runs on the other core while the command loads its
config, schemas and SciCat client. An empty stdin (the command never needed it) ends it.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import IngestError, NexusReadError
from .identity import FileIdentity
from .nexus import Prefetched, ReadLimits, open_nexus, read_path

__all__ = ["prefetch", "read_isolated", "start_reader"]

#: Seconds the parent waits beyond the child's own time limit before killing it.
_GRACE_S = 10.0

_spare: subprocess.Popen[str] | None = None
_spare_lock = threading.Lock()


#: numpy (imported by h5py) starts an OpenBLAS thread per core at import, and they spin:
#: ~90 ms of CPU per child on 2 cores (bench/RESULTS.md, issue 26) for linear algebra the
#: reader never does. One thread is enough for reading metadata.
_CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def _spawn() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "offline_ingestor.files.nexus_child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **_CHILD_ENV},
    )


def start_reader() -> None:
    """Start the child for this process's next :func:`read_isolated`, so h5py loads meanwhile.

    Best effort: a child that cannot start now is started (and its failure reported, naming
    the file) by the read itself. One that is never used is ended at exit.
    """
    global _spare
    with _spare_lock:
        if _spare is not None:
            return
        try:
            _spare = _spawn()
        except OSError:
            return
    atexit.register(_end_spare)


def _take_reader() -> subprocess.Popen[str]:
    global _spare
    with _spare_lock:
        process, _spare = _spare, None
    return process if process is not None else _spawn()


def _end_spare() -> None:
    global _spare
    with _spare_lock:
        process, _spare = _spare, None
    if process is not None:
        process.kill()
        process.communicate()


def prefetch(
    path: Path, paths: list[str], limits: ReadLimits, expected: FileIdentity | None
) -> dict[str, Any]:
    """Read every path in this process; per-path errors are kept, not raised."""
    results: dict[str, Any] = {}
    with open_nexus(path, limits, expected) as handle:
        for nexus_path in dict.fromkeys(paths):
            try:
                found = read_path(handle, nexus_path)
            except NexusReadError as exc:
                results[nexus_path] = {"error": exc.message}
                continue
            results[nexus_path] = {"values": [{"value": item.value, "unit": item.unit} for item in found]}
    return results


def _limit_memory(megabytes: int) -> None:
    if megabytes:
        size = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _describe_death(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit status {returncode}"


def read_isolated(
    path: Path,
    paths: list[str],
    limits: ReadLimits,
    expected: FileIdentity | None,
    memory_mb: int,
) -> Prefetched:
    """Run :func:`prefetch` in a child process; a crash or overrun is one NexusReadError."""
    request = {
        "file": os.fsdecode(path),
        "paths": paths,
        "limits": limits.to_dict(),
        "identity": expected.to_dict() if expected else None,
        "memory_mb": memory_mb,
    }
    with _take_reader() as child:
        try:
            stdout, stderr = child.communicate(json.dumps(request), timeout=limits.time_limit_s + _GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise NexusReadError(
                f"reading metadata of {path} took longer than {limits.time_limit_s:g} s and was stopped "
                "(ingestion.nexus_reading.time_limit_s)"
            ) from None
    if child.returncode != 0:
        last = (stderr.strip().splitlines() or [""])[-1][:200]
        memory = " (out of memory? ingestion.nexus_reading.child_memory_mb)" if "MemoryError" in last else ""
        raise NexusReadError(
            f"reading metadata of {path} crashed the HDF5 reader ({_describe_death(child.returncode)})"
            f"{memory}{': ' + last if last and child.returncode > 0 else ''}"
        )
    answer = json.loads(stdout)
    if "fatal" in answer:
        fatal = answer["fatal"]
        cls = getattr(errors, fatal["class"], NexusReadError)
        if not (isinstance(cls, type) and issubclass(cls, IngestError)):
            cls = NexusReadError
        raise cls(fatal["message"])
    return Prefetched(answer["results"])


def main() -> None:
    """Child side: load h5py, then read the request and answer on stdout."""
    import h5py  # noqa: F401  # before the request: this is what a started-early child overlaps

    text = sys.stdin.read()
    if not text:
        return  # started early and not needed
    request = json.loads(text)
    # Set here rather than in a preexec_fn, which is unsafe when the caller runs threads.
    _limit_memory(int(request.get("memory_mb") or 0))
    limits_data = request["limits"]
    limits = ReadLimits(**{**limits_data, "roots": tuple(limits_data["roots"])})
    identity = FileIdentity.from_dict(request["identity"]) if request.get("identity") else None
    try:
        results = prefetch(Path(request["file"]), request["paths"], limits, identity)
    except IngestError as exc:
        json.dump({"fatal": {"class": type(exc).__name__, "message": exc.message}}, sys.stdout)
        return
    json.dump({"results": results}, sys.stdout, default=str)


if __name__ == "__main__":
    main()

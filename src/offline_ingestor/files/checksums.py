"""Streamed file checksums with bounded memory and a per-file cache.

A file is read once through a fixed buffer (memory stays flat for a 100 GB file). The
result is cached by (resolved path, size, mtime_ns, algorithm) so a retried step does not
hash the same bytes again; a changed file gets a new key.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast, get_args

from ..config import Algorithm

__all__ = ["ALGORITHMS", "BUFFER_BYTES", "Algorithm", "clear_cache", "file_checksum"]

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
#: 1 MiB: large enough that the per-call overhead vanishes, small enough to stay in cache.
BUFFER_BYTES = 1 << 20
_CACHE_SIZE = 1024

Progress = Callable[[int], None]
_cache: OrderedDict[tuple[str, int, int, str], str] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(path: Path, algorithm: str, fd: int | None) -> tuple[str, int, int, str]:
    stat = os.fstat(fd) if fd is not None else path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, algorithm)


class _Digest(Protocol):
    def update(self, data: memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def _new_digest(algorithm: Algorithm) -> _Digest:
    """hashlib's, or for ``blake3`` the reference implementation's (PyPI ``blake3``).

    blake2b and sha256 run on one core (~0.8 GB/s): a big file on fast storage waits for the
    hash, not the disk. BLAKE3 splits each buffer over every core (``max_threads=AUTO``,
    the GIL released), several times faster on 2 cores. SciCat's ``chkAlg`` is free text,
    so ``blake3`` is what it records; blake2b stays the default (upstream's).
    """
    if algorithm == "blake3":
        import blake3

        return cast(_Digest, blake3.blake3(max_threads=blake3.blake3.AUTO))
    return hashlib.new(algorithm)


def _hash_fd(fd: int, algorithm: Algorithm, progress: Progress | None) -> str:
    digest = _new_digest(algorithm)
    buffer = bytearray(BUFFER_BYTES)
    view = memoryview(buffer)
    offset = 0
    while count := os.preadv(fd, [buffer], offset):
        offset += count
        digest.update(view[:count])
        if progress is not None:
            progress(count)
    return digest.hexdigest()


def _hash(path: Path, algorithm: Algorithm, progress: Progress | None, fd: int | None) -> str:
    if fd is not None:
        return _hash_fd(fd, algorithm, progress)
    with path.open("rb", buffering=0) as handle:
        return _hash_fd(handle.fileno(), algorithm, progress)


def file_checksum(
    path: Path, algorithm: Algorithm = "blake2b", progress: Progress | None = None, *, fd: int | None = None
) -> str:
    """Hex digest of a file, computed once per (path, size, mtime, algorithm).

    With ``fd`` the bytes come from that open descriptor (the file the caller checked), not
    from whatever the name points to now.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported checksum algorithm {algorithm!r}; use one of {ALGORITHMS}")
    key = _cache_key(path, algorithm, fd)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = _hash(path, algorithm, progress, fd)
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget cached checksums (tests and benchmarks)."""
    with _cache_lock:
        _cache.clear()

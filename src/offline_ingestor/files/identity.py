"""Which file a job is about, checked again by every step that opens it.

``select-schema`` records the data file's device, inode, size and mtime. Every later step
that opens the file opens it without following a final symlink (``O_NOFOLLOW``), and
refuses it when the device/inode differ: a file swapped for a symlink, or for another file,
between two steps is never stated, hashed or catalogued in place of the one selected.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import FileNotReady, InputFileError

__all__ = ["FileIdentity", "open_no_follow", "snapshot", "verify_handle"]


@dataclass(frozen=True)
class FileIdentity:
    """What ``fstat`` says about an open file; JSON-able through :meth:`to_dict`."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileIdentity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileIdentity:
        return cls(int(data["dev"]), int(data["ino"]), int(data["size"]), int(data["mtime_ns"]))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def same_file(self, other: FileIdentity) -> bool:
        return (self.dev, self.ino) == (other.dev, other.ino)


def _open_error(path: Path, exc: OSError) -> InputFileError:
    if exc.errno == errno.ELOOP:
        return InputFileError(f"refused: {path} is now a symbolic link (it was resolved when enqueued)")
    if exc.errno == errno.ENOENT:
        return InputFileError(f"file not found: {path}")
    if exc.errno == errno.EACCES:
        return InputFileError(f"permission denied: {path}")
    return InputFileError(f"cannot open {path}: {exc.strerror}")


@contextmanager
def open_no_follow(path: Path, expected: FileIdentity | None = None) -> Iterator[int]:
    """A read-only descriptor of ``path`` itself (never a symlink's target), checked.

    ``O_NONBLOCK`` keeps a FIFO put in the file's place from hanging the open; anything but
    a regular file is refused. With ``expected``, another device/inode is refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputFileError(f"is a directory, not a data file: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(f"refused: {path} is not a regular file")
        os.set_blocking(fd, True)
        if expected is not None:
            check_same(path, expected, FileIdentity.of(info))
        yield fd
    finally:
        os.close(fd)


def check_same(path: Path, expected: FileIdentity, found: FileIdentity) -> None:
    """Refuse another file at the same path (device/inode differ from select-schema's)."""
    if not expected.same_file(found):
        raise InputFileError(
            f"refused: {path} was replaced since select-schema "
            f"(device/inode {expected.dev}/{expected.ino} → {found.dev}/{found.ino})"
        )


def snapshot(path: Path) -> FileIdentity:
    """The identity of the regular file at ``path`` now (no symlink followed)."""
    with open_no_follow(path) as fd:
        return FileIdentity.of(os.fstat(fd))


def verify_handle(path: Path, handle: Any, expected: FileIdentity | None) -> None:
    """Check that an open h5py file is the one select-schema recorded.

    h5py opens by name; the descriptor libhdf5 actually holds is compared, so a swap between
    our check and h5py's open is caught too.
    """
    if expected is None:
        return
    try:
        fd = handle.id.get_vfd_handle()
        found = FileIdentity.of(os.fstat(fd))
    except (OSError, ValueError, TypeError):
        # Drivers without a POSIX descriptor: fall back to the name (still no symlink).
        found = snapshot(path)
    check_same(path, expected, found)


def check_stable(path: Path, before: FileIdentity, after: FileIdentity) -> None:
    """A file that grew or was touched while we read it is not finished: retry later."""
    if (before.size, before.mtime_ns) != (after.size, after.mtime_ns):
        raise FileNotReady(
            f"{path} changed while it was being read (size {before.size} → {after.size} bytes): "
            "still being written? retrying later"
        )

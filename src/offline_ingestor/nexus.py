"""Read metadata values out of a NeXus (HDF5) file with h5py.

Only the datasets a schema names are read, never whole event streams: a dataset larger
than :data:`MAX_ELEMENTS` is refused instead of being loaded into memory.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FileNotReady, InputFileError, NexusReadError

__all__ = ["MAX_ELEMENTS", "MAX_STRING_BYTES", "NexusValue", "open_nexus", "read_path"]

#: Metadata is small; anything bigger is data, and reading it would stall the worker.
MAX_ELEMENTS = 100_000
#: A single string value longer than this is refused (SciCat's body limit is 16 MB).
MAX_STRING_BYTES = 1_000_000
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class NexusValue:
    """A value read from the file and the ``units`` attribute next to it, if any."""

    value: Any
    unit: str = ""


def check_hdf5(path: Path) -> None:
    """Fail with a precise message unless ``path`` is a readable, non-empty HDF5 file."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InputFileError(f"file not found: {path}") from None
    except PermissionError:
        raise InputFileError(f"permission denied: {path}") from None
    if path.is_dir():
        raise InputFileError(f"is a directory, not a data file: {path}")
    if stat.st_size == 0:
        raise InputFileError(f"file is empty: {path}")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(HDF5_SIGNATURE))
    except PermissionError:
        raise InputFileError(f"permission denied: {path}") from None
    # HDF5 allows a user block before the signature; h5py decides in that rare case.
    if head != HDF5_SIGNATURE and stat.st_size < 512:
        raise InputFileError(f"not an HDF5 file: {path}")


@contextmanager
def open_nexus(path: Path) -> Iterator[Any]:
    """Open a NeXus file read-only, mapping h5py's errors to ours."""
    import h5py  # lazy: keeps `--help` and the CLI start fast

    check_hdf5(path)
    try:
        # HDF5 file locking: a writer that still has the file open holds an exclusive lock,
        # so we get BlockingIOError (transient) instead of reading a half-written file.
        # "best-effort" ignores filesystems without locks (some NFS mounts).
        handle = h5py.File(path, "r", locking="best-effort")
    except BlockingIOError:
        raise FileNotReady(f"file is still open for writing (HDF5 lock held): {path}") from None
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or ("file signature not found" not in text and "eof" in text.lower()):
            raise InputFileError(f"truncated or corrupt HDF5 file: {path} ({text})") from None
        raise InputFileError(f"not a readable HDF5 file: {path} ({text})") from None
    try:
        yield handle
    finally:
        handle.close()


def _expand(node: Any, parts: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield prefix or "/", node
        return
    head, rest = parts[0], parts[1:]
    if not hasattr(node, "keys"):
        return
    if any(char in head for char in "*?["):
        for name in sorted(node.keys()):
            if fnmatch.fnmatchcase(name, head):
                yield from _expand(node[name], rest, f"{prefix}/{name}")
    elif head in node:
        yield from _expand(node[head], rest, f"{prefix}/{head}")


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NexusReadError(f"NeXus path {path}: string is not valid UTF-8 (byte {exc.start})") from None


def _to_python(raw: Any, path: str) -> Any:
    import numpy as np

    if isinstance(raw, bytes | str):
        # The limit is in bytes (what SciCat's body limit counts), checked before decoding.
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_STRING_BYTES:
            raise NexusReadError(f"NeXus path {path}: string of {size} bytes exceeds {MAX_STRING_BYTES}")
        return _decode(bytes(raw), path) if isinstance(raw, bytes) else str(raw)
    if isinstance(raw, np.ndarray):
        if raw.size == 1:
            return _to_python(raw.reshape(-1)[0], path)
        return [_to_python(item, path) for item in raw.reshape(-1)]
    if isinstance(raw, np.generic):
        return raw.item()
    return raw


def _read_dataset(dataset: Any, path: str) -> NexusValue:
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise NexusReadError(f"NeXus path {path} is a group, not a dataset")
    if dataset.size is not None and dataset.size > MAX_ELEMENTS:
        raise NexusReadError(
            f"NeXus path {path} holds {dataset.size} elements: data, not metadata (limit {MAX_ELEMENTS})"
        )
    raw = dataset[()]
    unit = dataset.attrs.get("units")
    unit_text = "" if unit is None else str(_to_python(unit, f"{path}@units"))
    return NexusValue(_to_python(raw, path), unit_text)


def read_path(handle: Any, path: str) -> list[NexusValue]:
    """Read every dataset matching ``path``; ``*`` matches within one path component.

    A path without wildcards yields at most one value. Matches come in name order, which
    is stable across files (h5py iterates groups alphabetically).
    """
    parts = [part for part in path.split("/") if part]
    matches = list(_expand(handle, parts, ""))
    if not matches:
        raise NexusReadError(f"NeXus path {path} not found")
    return [_read_dataset(node, name) for name, node in matches]

"""Read metadata values out of a NeXus (HDF5) file with h5py.

Only the datasets a schema names are read, never whole event streams. Everything a hostile
or broken file could make expensive is bounded (:class:`ReadLimits`): bytes per value and
per file (checked before reading for fixed-size types), datasets per wildcard, and time.
External links, virtual-dataset sources and external raw-data files are followed only when
they resolve inside ``ingestion.allowed_data_roots``; a broken link or a link loop is a
one-line :class:`NexusReadError`.
"""

from __future__ import annotations

import contextvars
import fnmatch
import os
import stat as stat_module
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FileNotReady, InputFileError, NexusReadError
from .identity import FileIdentity, open_no_follow, verify_handle

__all__ = [
    "MAX_ELEMENTS",
    "MAX_STRING_BYTES",
    "NexusValue",
    "Prefetched",
    "ReadLimits",
    "check_hdf5",
    "open_nexus",
    "read_path",
]

#: Metadata is small; anything bigger is data, and reading it would stall the worker.
MAX_ELEMENTS = 100_000
#: Default per-value byte budget (SciCat's body limit is 16 MB).
MAX_STRING_BYTES = 1_000_000
#: Test-only: skip the string-VDS guard, to reproduce the libhdf5 crash in a child process.
UNSAFE_VDS_ENV = "OFFLINE_INGESTOR_UNSAFE_VDS"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class NexusValue:
    """A value read from the file and the ``units`` attribute next to it, if any."""

    value: Any
    unit: str = ""


@dataclass(frozen=True)
class ReadLimits:
    """What reading one file may cost, and where links may lead (config: ``nexus_reading``)."""

    roots: tuple[str, ...] = ()
    max_value_bytes: int = MAX_STRING_BYTES
    max_file_bytes: int = 16_000_000
    max_wildcard_matches: int = 1000
    time_limit_s: float = 120.0

    @classmethod
    def from_config(cls, config: Any) -> ReadLimits:
        options = config.ingestion.nexus_reading
        return cls(
            roots=tuple(os.path.realpath(root) for root in config.ingestion.allowed_data_roots),
            max_value_bytes=options.max_value_bytes,
            max_file_bytes=options.max_file_bytes,
            max_wildcard_matches=options.max_wildcard_matches,
            time_limit_s=options.time_limit_s,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "roots": list(self.roots),
            "max_value_bytes": self.max_value_bytes,
            "max_file_bytes": self.max_file_bytes,
            "max_wildcard_matches": self.max_wildcard_matches,
            "time_limit_s": self.time_limit_s,
        }


@dataclass
class _Reading:
    """The state of one open file: its limits, its folder, what has been spent so far."""

    limits: ReadLimits
    folder: str
    deadline: float
    used_bytes: int = 0
    warned: set[str] = field(default_factory=set)
    #: Files libhdf5 opened for this one, and whether they are inside the roots: each entry
    #: read is checked, and a realpath per entry (a few syscalls) was ~2 % of a small file's
    #: worker CPU (bench/RESULTS.md, issue 26 target 3). Per open file: a later open asks again.
    inside: dict[str, bool] = field(default_factory=dict)

    def opened_inside(self, filename: str) -> bool:
        """Whether ``filename``, a file libhdf5 opened while reading this one, is inside the roots."""
        if filename not in self.inside:
            self.inside[filename] = _inside_roots(filename, self.limits.roots)
        return self.inside[filename]

    def charge(self, nbytes: int, path: str) -> None:
        limits = self.limits
        if nbytes > limits.max_value_bytes:
            raise NexusReadError(
                f"NeXus path {path}: value of {nbytes} bytes exceeds the limit of {limits.max_value_bytes} "
                "(ingestion.nexus_reading.max_value_bytes)"
            )
        self.used_bytes += nbytes
        if self.used_bytes > limits.max_file_bytes:
            raise NexusReadError(
                f"NeXus path {path}: values read from this file exceed {limits.max_file_bytes} bytes "
                "(ingestion.nexus_reading.max_file_bytes)"
            )

    def tick(self, path: str) -> None:
        if time.monotonic() > self.deadline:
            raise NexusReadError(
                f"NeXus path {path}: reading metadata took longer than {self.limits.time_limit_s:g} s "
                "(ingestion.nexus_reading.time_limit_s)"
            )


_current: contextvars.ContextVar[_Reading | None] = contextvars.ContextVar("nexus_reading", default=None)


def _reading() -> _Reading:
    found = _current.get()
    return found if found is not None else _Reading(ReadLimits(), "", float("inf"))


def check_hdf5(path: Path, expected: FileIdentity | None = None) -> FileIdentity:
    """Fail with a precise message unless ``path`` is a readable, non-empty HDF5 file.

    The file is opened without following a final symlink; its identity is returned (and
    compared with ``expected`` when given).
    """
    with open_no_follow(path, expected) as fd:
        identity = FileIdentity.of(os.fstat(fd))
        if identity.size == 0:
            raise InputFileError(f"file is empty: {path}")
        try:
            head = os.pread(fd, len(HDF5_SIGNATURE), 0)
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
    # HDF5 allows a user block before the signature; h5py decides in that rare case.
    if head != HDF5_SIGNATURE and identity.size < 512:
        raise InputFileError(f"not an HDF5 file: {path}")
    return identity


@contextmanager
def open_nexus(
    path: Path, limits: ReadLimits | None = None, expected: FileIdentity | None = None
) -> Iterator[Any]:
    """Open a NeXus file read-only, mapping h5py's errors to ours.

    While the file is open, :func:`read_path` applies ``limits`` to it; with ``expected``
    the file h5py opened must be the one select-schema recorded.
    """
    import h5py  # lazy: keeps `--help` and the CLI start fast

    check_hdf5(path, expected)
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
    limits = limits or ReadLimits()
    token = _current.set(_Reading(limits, str(path.parent), time.monotonic() + limits.time_limit_s))
    try:
        verify_handle(path, handle, expected)
        yield handle
    finally:
        _current.reset(token)
        handle.close()


# -- where links may lead ------------------------------------------------------------------


def _inside_roots(target: str, roots: tuple[str, ...]) -> bool:
    if not roots:
        return True
    real = os.path.realpath(target)
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _check_target(target: str, what: str, path: str) -> None:
    """Refuse a linked file outside the data roots or that is not a regular file."""
    reading = _reading()
    if not _inside_roots(target, reading.limits.roots):
        raise NexusReadError(f"NeXus path {path}: {what} {target} is outside the allowed data roots: refused")
    try:
        info = os.stat(target)
    except OSError:
        return  # missing: libhdf5 reports the broken link, mapped below
    if not stat_module.S_ISREG(info.st_mode):
        raise NexusReadError(f"NeXus path {path}: {what} {target} is not a regular file: refused")


def _candidates(name: str, folder: str) -> list[str]:
    """Where libhdf5 may look for a linked file: as given, beside the file, in the cwd."""
    if os.path.isabs(name):
        return [name]
    return [os.path.join(folder, name), os.path.join(os.getcwd(), name)]


def _check_linked(name: str, what: str, path: str, *, every: bool = False) -> None:
    """Check the file libhdf5 would open for a link, VDS source or external storage.

    For a relative name libhdf5 takes the first that exists of "beside the file" and "in the
    working directory"; ``every`` checks both (external raw storage, whose prefix varies).
    """
    candidates = _candidates(name, _reading().folder)
    existing = [target for target in candidates if os.path.lexists(target)]
    for target in (existing if every else existing[:1]) or candidates[:1]:
        _check_target(target, what, path)


#: Soft links followed in a row before calling it a loop (libhdf5's own limit is 16).
_MAX_SOFT_HOPS = 16


def _follow_soft(node: Any, target: str, path: str, hops: int) -> Any:
    """Follow a soft link hop by hop ourselves, so every hop (an external link too) is checked."""
    if hops >= _MAX_SOFT_HOPS:
        raise NexusReadError(
            f"NeXus path {path}: cannot follow soft link: more than {_MAX_SOFT_HOPS} hops (a loop?)"
        )
    # A relative target is relative to the group holding the link.
    current = node.file["/"] if target.startswith("/") else node
    for part in [part for part in target.split("/") if part and part != "."]:
        if not hasattr(current, "keys"):
            raise NexusReadError(f"NeXus path {path}: cannot follow soft link: {target} is not a group path")
        current = _child(current, part, path, hops + 1)
    return current


def _child(node: Any, name: str, path: str, hops: int = 0) -> Any:
    """``node[name]``, checking an external link's target first and mapping h5py's errors."""
    import h5py

    reading = _reading()
    try:
        link = node.get(name, getlink=True)
    except (KeyError, RuntimeError, OSError, ValueError) as exc:
        raise NexusReadError(f"NeXus path {path}: cannot read link: {_one_line(exc)}") from None
    if link is None:
        raise NexusReadError(f"NeXus path {path} not found")
    if isinstance(link, h5py.SoftLink) and link.path.strip("/") and ".." not in link.path.split("/"):
        return _follow_soft(node, link.path, path, hops)
    if isinstance(link, h5py.ExternalLink):
        _check_linked(link.filename, "external link to", path)
    try:
        child = node[name]
    except (KeyError, RuntimeError, OSError, ValueError, RecursionError) as exc:
        kind = {h5py.ExternalLink: "external link", h5py.SoftLink: "soft link"}.get(type(link), "entry")
        raise NexusReadError(f"NeXus path {path}: cannot follow {kind}: {_one_line(exc)}") from None
    # Whatever libhdf5 actually opened must be inside the roots too.
    opened = getattr(getattr(child, "file", None), "filename", None)
    if opened and not reading.opened_inside(opened):
        raise NexusReadError(f"NeXus path {path}: leads to {opened}, outside the allowed data roots: refused")
    return child


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _expand(node: Any, parts: list[str], prefix: str, found: list[tuple[str, Any]], pattern: str) -> None:
    reading = _reading()
    reading.tick(prefix or "/")
    if not parts:
        found.append((prefix or "/", node))
        if len(found) > reading.limits.max_wildcard_matches:
            raise NexusReadError(
                f"NeXus path {pattern}: matches more than {reading.limits.max_wildcard_matches} datasets "
                "(ingestion.nexus_reading.max_wildcard_matches)"
            )
        return
    head, rest = parts[0], parts[1:]
    if not hasattr(node, "keys"):
        return
    if any(char in head for char in "*?["):
        for count, name in enumerate(sorted(node.keys())):
            if count % 1000 == 999:
                reading.tick(f"{prefix}/{head}")
            if fnmatch.fnmatchcase(name, head):
                _expand(_child(node, name, f"{prefix}/{name}"), rest, f"{prefix}/{name}", found, pattern)
    elif head in node:
        _expand(_child(node, head, f"{prefix}/{head}"), rest, f"{prefix}/{head}", found, pattern)


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NexusReadError(f"NeXus path {path}: string is not valid UTF-8 (byte {exc.start})") from None


def _nbytes(raw: Any) -> int:
    """Bytes a read value takes (strings by their encoded length)."""
    import numpy as np

    if isinstance(raw, bytes):
        return len(raw)
    if isinstance(raw, str):
        return len(raw.encode("utf-8", "surrogatepass"))
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind == "O":
            return sum(_nbytes(item) for item in raw.reshape(-1))
        return int(raw.nbytes)
    if isinstance(raw, np.generic):
        return int(raw.nbytes)
    return 8


def _to_python(raw: Any, path: str) -> Any:
    import numpy as np

    if isinstance(raw, bytes | str):
        return _decode(bytes(raw), path) if isinstance(raw, bytes) else str(raw)
    if isinstance(raw, np.ndarray):
        if raw.size == 1:
            return _to_python(raw.reshape(-1)[0], path)
        return [_to_python(item, path) for item in raw.reshape(-1)]
    if isinstance(raw, np.generic):
        return raw.item()
    return raw


def _check_sources(dataset: Any, path: str) -> None:
    """Refuse a virtual dataset or external raw storage that reads files outside the roots."""
    if dataset.is_virtual:
        for source in dataset.virtual_sources():
            if source.file_name != ".":
                _check_linked(source.file_name, "virtual dataset source", path)
        if dataset.dtype.kind in "SOU" and not os.environ.get(UNSAFE_VDS_ENV):
            _check_string_vds(dataset, path)
    for name, *_ in dataset.external or ():
        _check_linked(os.fsdecode(name), "external raw-data file", path, every=True)


def _check_string_vds(dataset: Any, path: str) -> None:
    """Refuse a string VDS whose sources store strings differently (libhdf5 segfaults)."""
    import h5py

    ours = h5py.check_string_dtype(dataset.dtype)
    for source in dataset.virtual_sources():
        try:
            if source.file_name == ".":
                theirs = h5py.check_string_dtype(dataset.file[source.dset_name].dtype)
            else:
                found = [t for t in _candidates(source.file_name, _reading().folder) if os.path.exists(t)]
                target = found[0] if found else source.file_name
                with h5py.File(target, "r", locking="best-effort") as other:
                    theirs = h5py.check_string_dtype(other[source.dset_name].dtype)
        except (OSError, KeyError, RuntimeError, ValueError):
            continue  # missing source: libhdf5 fills, no conversion
        if theirs is None or ours is None or (theirs.length is None) != (ours.length is None):
            raise NexusReadError(
                f"NeXus path {path}: string virtual dataset whose source {source.dset_name} stores "
                "strings differently: not read (libhdf5 crashes converting them)"
            )


def _read_dataset(dataset: Any, path: str) -> NexusValue:
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise NexusReadError(f"NeXus path {path} is a group, not a dataset")
    reading = _reading()
    if dataset.size is not None and dataset.size > MAX_ELEMENTS:
        raise NexusReadError(
            f"NeXus path {path} holds {dataset.size} elements: data, not metadata (limit {MAX_ELEMENTS})"
        )
    _check_sources(dataset, path)
    # Fixed-size types (long fixed strings, sub-array dtypes) are charged before reading:
    # compression can make a few KB on disk expand to GBs in memory.
    # Variable-length items live uncompressed in the file's heap, so the file size bounds them.
    if dataset.dtype.kind != "O":
        planned = int(dataset.size or 0) * int(dataset.dtype.itemsize)
        if planned > reading.limits.max_value_bytes:
            reading.charge(planned, path)
    reading.tick(path)
    try:
        raw = dataset[()]
        unit = dataset.attrs.get("units")
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise NexusReadError(f"NeXus path {path}: cannot read: {_one_line(exc)}") from None
    reading.charge(_nbytes(raw) + (_nbytes(unit) if unit is not None else 0), path)
    unit_text = "" if unit is None else str(_to_python(unit, f"{path}@units"))
    return NexusValue(_to_python(raw, path), unit_text)


def read_path(handle: Any, path: str) -> list[NexusValue]:
    """Read every dataset matching ``path``; ``*`` matches within one path component.

    A path without wildcards yields at most one value. Matches come in name order, which
    is stable across files (h5py iterates groups alphabetically).
    """
    if isinstance(handle, Prefetched):
        return handle.read_path(path)
    parts = [part for part in path.split("/") if part]
    matches: list[tuple[str, Any]] = []
    _expand(handle, parts, "", matches, path)
    if not matches:
        raise NexusReadError(f"NeXus path {path} not found")
    return [_read_dataset(node, name) for name, node in matches]


class Prefetched:
    """Values read earlier (in a child process), served to :func:`read_path` by path."""

    def __init__(self, results: dict[str, Any]) -> None:
        self._results = results

    def read_path(self, path: str) -> list[NexusValue]:
        found = self._results.get(path)
        if found is None:
            raise NexusReadError(f"NeXus path {path} was not read")
        if "error" in found:
            raise NexusReadError(found["error"])
        return [NexusValue(item["value"], item["unit"]) for item in found["values"]]

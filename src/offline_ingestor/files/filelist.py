"""The file list of an origdatablock: stats and checksums, plus the optional hash file."""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from pathlib import Path
from typing import Any

from ..config import FileHandlingOptions
from ..errors import IdempotencyConflict, InputFileError
from .checksums import Progress, file_checksum
from .identity import FileIdentity, check_stable, open_no_follow

__all__ = ["build_file_list", "hash_file_path", "refuse_changed_file"]


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _stat_entry(path: Path, info: os.stat_result, options: FileHandlingOptions) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path.as_posix(), "size": info.st_size, "time": _iso(info.st_mtime)}
    if options.compute_file_stats:
        # SciCat's DataFile DTO wants these as strings (an int uid is a 400).
        entry.update(uid=str(info.st_uid), gid=str(info.st_gid), perm=oct(info.st_mode))
    return entry


def _entry(
    path: Path, options: FileHandlingOptions, *, with_hash: bool, progress: Progress | None
) -> dict[str, Any]:
    try:
        info = path.stat()
    except OSError as exc:
        raise InputFileError(f"cannot stat {path}: {exc.strerror}") from None
    entry = _stat_entry(path, info, options)
    if with_hash and options.compute_file_hash:
        try:
            entry["chk"] = file_checksum(path, options.file_hash_algorithm, progress)
        except OSError as exc:
            raise InputFileError(f"cannot read {path} to hash it: {exc.strerror}") from None
    return entry


def _data_file_entry(
    path: Path, options: FileHandlingOptions, expected: FileIdentity | None, progress: Progress | None
) -> dict[str, Any]:
    """The data file's entry, from one descriptor opened without following symlinks.

    Stated before and after hashing: a file that grew or was touched meanwhile is not
    finished (``FileNotReady``), whatever wrote it (cp and rsync hold no HDF5 lock).
    """
    with open_no_follow(path, expected) as fd:
        before = os.fstat(fd)
        entry = _stat_entry(path, before, options)
        if options.compute_file_hash:
            try:
                entry["chk"] = file_checksum(path, options.file_hash_algorithm, progress, fd=fd)
            except OSError as exc:
                raise InputFileError(f"cannot read {path} to hash it: {exc.strerror}") from None
            check_stable(path, FileIdentity.of(before), FileIdentity.of(os.fstat(fd)))
    return entry


def refuse_changed_file(block: dict[str, Any], entry: dict[str, Any], pid: str) -> None:
    """Refuse to call a file "already catalogued" when its size or checksum changed since.

    Policy: a catalogued file is never updated in place (SciCat's origdatablocks are
    append-only records of what was measured); a rewritten file is an operator's decision,
    so the run fails naming the field instead of succeeding silently.
    """
    for listed in block.get("dataFileList") or []:
        if listed.get("path") != entry["path"]:
            continue
        changed = [
            f"{name} {listed.get(name)!r} → {entry.get(name)!r}"
            for name in ("size", "chk")
            if name in listed and name in entry and listed[name] != entry[name]
        ]
        if changed:
            raise IdempotencyConflict(
                f"{entry['path']} changed since it was catalogued in dataset {pid}: {'; '.join(changed)}; "
                "SciCat keeps the old record (delete it, or ingest the new file under another name)"
            )


def hash_file_path(data_file: Path, options: FileHandlingOptions) -> Path:
    """Where the hash of ``data_file`` is saved: ``<dir>/<stem>.<extension>``.

    A relative ``ingestor_files_directory`` is taken from the data file's folder, and ``..``
    is folded (``/d/raw/../ingestor`` → ``/d/ingestor``) so listed paths stay clean.
    """
    directory = Path(options.ingestor_files_directory).expanduser()
    if not directory.is_absolute():
        directory = Path(os.path.normpath(data_file.parent / directory))
    return directory / f"{data_file.stem}.{options.hash_file_extension}"


def _relative(entry: dict[str, Any], source_folder: str) -> dict[str, Any]:
    path = Path(entry["path"])
    try:
        return {**entry, "path": path.relative_to(source_folder).as_posix()}
    except ValueError:
        return entry  # outside the source folder: keep it absolute rather than lie


def _write_hash_file(target: Path, checksum: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(checksum)
    except OSError as exc:
        raise InputFileError(f"cannot write hash file {target}: {exc.strerror}") from None


def _umask() -> int:
    """This process's umask without changing it (os.umask can only read by setting)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _planned_entry(target: Path, checksum: str, options: FileHandlingOptions) -> dict[str, Any]:
    """The entry a hash file would get if it were written now by this process."""
    entry: dict[str, Any] = {"path": target.as_posix(), "size": len(checksum), "time": _iso(time.time())}
    if options.compute_file_stats:
        umask = _umask()
        entry.update(uid=str(os.getuid()), gid=str(os.getgid()), perm=oct(stat.S_IFREG | (0o666 & ~umask)))
    return entry


def build_file_list(
    data_file: Path,
    options: FileHandlingOptions,
    *,
    source_folder: str,
    extra_files: list[Path] | None = None,
    progress: Progress | None = None,
    write_hash_files: bool = True,
    expected: FileIdentity | None = None,
) -> list[dict[str, Any]]:
    """Entries for the data file, extra files and, if configured, the saved hash file.

    With ``write_hash_files`` off (dry runs) hash files are listed as they would be written
    but not written.
    """
    entries: list[dict[str, Any]] = []
    for path in [data_file, *(extra_files or [])]:
        entry = (
            _data_file_entry(path, options, expected, progress)
            if path == data_file
            else _entry(path, options, with_hash=True, progress=None)
        )
        entries.append(entry)
        if options.save_file_hash and "chk" in entry:
            target = hash_file_path(path, options)
            if write_hash_files:
                _write_hash_file(target, entry["chk"])
                entries.append(_entry(target, options, with_hash=False, progress=None))
            else:
                entries.append(_planned_entry(target, entry["chk"], options))
    if options.file_path_type == "relative" and source_folder:
        entries = [_relative(entry, source_folder) for entry in entries]
    return entries

"""The file list of an origdatablock: stats and checksums, plus the optional hash file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from .checksums import Progress, file_checksum
from .config import FileHandling
from .errors import InputFileError

__all__ = ["build_file_list", "hash_file_path"]


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _entry(
    path: Path, options: FileHandling, *, with_hash: bool, progress: Progress | None
) -> dict[str, Any]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputFileError(f"cannot stat {path}: {exc.strerror}") from None
    entry: dict[str, Any] = {"path": path.as_posix(), "size": stat.st_size, "time": _iso(stat.st_mtime)}
    if options.compute_file_stats:
        # SciCat's DataFile DTO wants these as strings (an int uid is a 400).
        entry.update(uid=str(stat.st_uid), gid=str(stat.st_gid), perm=oct(stat.st_mode))
    if with_hash and options.compute_file_hash:
        try:
            entry["chk"] = file_checksum(path, options.file_hash_algorithm, progress)
        except OSError as exc:
            raise InputFileError(f"cannot read {path} to hash it: {exc.strerror}") from None
    return entry


def hash_file_path(data_file: Path, options: FileHandling) -> Path:
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


def build_file_list(
    data_file: Path,
    options: FileHandling,
    *,
    source_folder: str,
    extra_files: list[Path] | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Entries for the data file, extra files and, if configured, the saved hash file."""
    entries: list[dict[str, Any]] = []
    for path in [data_file, *(extra_files or [])]:
        entry = _entry(path, options, with_hash=True, progress=progress if path == data_file else None)
        entries.append(entry)
        if options.save_file_hash and "chk" in entry:
            target = hash_file_path(path, options)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(entry["chk"])
            except OSError as exc:
                raise InputFileError(f"cannot write hash file {target}: {exc.strerror}") from None
            entries.append(_entry(target, options, with_hash=False, progress=None))
    if options.file_path_type == "relative" and source_folder:
        entries = [_relative(entry, source_folder) for entry in entries]
    return entries

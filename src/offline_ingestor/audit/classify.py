"""One class per file, from its identity, what SciCat holds and what Redis says.

A file is ``ingested`` when its dataset exists, exactly one origdatablock lists the file,
the dataset's ``size``/``numberOfFiles`` equal the sums over its blocks, and the file on
disk still has the size and mtime (and with ``--checksums`` the checksum) the block
records. Otherwise the first that applies of: Redis ``queued``/``running``/``failed``,
``missing``, ``no-files``, ``duplicate-blocks``, ``totals-mismatch``, ``changed-on-disk``.
A file whose dataset is whole but whose schema's SciCat job (``scicat_job``) or new sample
(``create_missing``) SciCat lacks is ``job-missing`` / ``sample-missing``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from ..scicat.totals import totals_of_blocks
from .identity import Identity, Unidentified

__all__ = [
    "CLASSES",
    "DATASET_CLASSES",
    "FileResult",
    "OrphanResult",
    "classify",
    "classify_unidentified",
    "file_stat",
    "holding_blocks",
]

CLASSES = (
    "ingested",
    "missing",
    "queued",
    "running",
    "failed",
    "no-files",
    "duplicate-blocks",
    "totals-mismatch",
    "changed-on-disk",
    "sample-missing",
    "job-missing",
    "unselectable",
    "legacy-pid",
    "orphan",
)
#: Classes that need a dataset in SciCat (and so its blocks) to be decided.
DATASET_CLASSES = (
    "no-files",
    "duplicate-blocks",
    "totals-mismatch",
    "changed-on-disk",
    "sample-missing",
    "job-missing",
    "ingested",
)
_REDIS_CLASSES = ("queued", "running", "failed")


@dataclass
class FileResult:
    """One audited file (one JSON line with ``--json``)."""

    file: str
    cls: str
    schema: str = ""
    key: str = ""
    pid: str | None = None
    reason: str = ""
    block_ids: list[str] = field(default_factory=list)
    #: For admins: the exact API calls that would fix what the audit must not do itself.
    admin: list[str] = field(default_factory=list)
    #: The file's "size:mtime_ns" and the dataset's updatedAt when audited (``--previous``).
    stat: str = ""
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["class"] = out.pop("cls")
        return {k: v for k, v in out.items() if v not in (None, "", [])} | {"class": self.cls}


@dataclass
class OrphanResult:
    """A dataset under the audited roots whose data file is gone."""

    pid: str
    source_folder: str
    file: str
    reason: str
    admin: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"class": "orphan", **asdict(self)}


def holding_blocks(blocks: list[dict[str, Any]], entry_path: str) -> list[dict[str, Any]]:
    """Blocks listing our file: the same test ``post_origdatablock`` uses before posting."""
    return [
        block
        for block in blocks
        if any(item.get("path") == entry_path for item in block.get("dataFileList") or [])
    ]


def _seconds(value: Any) -> int | None:
    """An ISO time to whole seconds (SciCat normalises to UTC with milliseconds)."""
    if not isinstance(value, str):
        return None
    try:
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _changes(stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    changes = []
    if int(stored.get("size") or -1) != int(expected["size"]):
        changes.append(f"size {stored.get('size')} in SciCat, {expected['size']} on disk")
    if _seconds(stored.get("time")) != _seconds(expected.get("time")):
        changes.append(f"mtime {stored.get('time')} in SciCat, {expected.get('time')} on disk")
    if "chk" in expected and stored.get("chk") != expected["chk"]:
        changes.append(f"checksum {stored.get('chk')} in SciCat, {expected['chk']} on disk")
    return changes


def classify(
    identity: Identity,
    dataset: dict[str, Any] | None,
    blocks: list[dict[str, Any]],
    state: str,
    jobs: list[dict[str, Any]] | None = None,
) -> FileResult:
    """The class of one identified file; ``blocks`` are the dataset's (empty if none).

    ``jobs``: SciCat's jobs carrying the file's marker, when its schema has a ``scicat_job``.
    """
    result = FileResult(identity.file, "", identity.schema_id, identity.key, identity.pid)
    result.stat = file_stat(identity.file)
    if dataset is None:
        result.cls = state if state in _REDIS_CLASSES else "missing"
        result.reason = "no dataset in SciCat" + (f"; Redis says {state}" if state else "")
        return result
    result.pid = str(dataset.get("pid"))
    result.updated_at = str(dataset.get("updatedAt") or "")
    ours = holding_blocks(blocks, identity.entry["path"])
    result.block_ids = [str(block.get("_id") or block.get("id")) for block in ours]
    size, count = totals_of_blocks(blocks)
    stored = (int(dataset.get("size") or 0), int(dataset.get("numberOfFiles") or 0))
    changes = _changes(_our_entry(ours[0], identity), identity.entry) if ours else []
    if len(ours) == 1 and stored == (size, count) and not changes:
        result.cls, result.reason = _extras(identity, state, jobs)
        return result
    if state in _REDIS_CLASSES:
        result.cls, result.reason = state, f"Redis says {state}; dataset incomplete so far"
    elif not ours:
        result.cls, result.reason = "no-files", "dataset exists, no origdatablock lists this file"
    elif len(ours) > 1:
        result.cls = "duplicate-blocks"
        result.reason = f"{len(ours)} origdatablocks list this file"
    elif stored != (size, count):
        result.cls = "totals-mismatch"
        result.reason = f"dataset size/numberOfFiles {stored[0]}/{stored[1]}, blocks sum to {size}/{count}"
    else:
        result.cls, result.reason = "changed-on-disk", "; ".join(changes)
    return result


def _extras(identity: Identity, state: str, jobs: list[dict[str, Any]] | None) -> tuple[str, str]:
    """A whole dataset: ``ingested``, unless its new sample or its SciCat job is missing."""
    if state in _REDIS_CLASSES and (identity.sample_missing or (identity.job_lookup and not jobs)):
        return state, f"Redis says {state}; the dataset is whole, its sample or job not yet"
    if identity.sample_missing:
        return "sample-missing", "SciCat holds no sample of the file's name (create_missing would make it)"
    if identity.job_lookup is not None and not jobs:
        return (
            "job-missing",
            f"no SciCat job of type {identity.job_lookup['type']!r} carries this file's marker",
        )
    return "ingested", ""


def file_stat(path: str) -> str:
    """``size:mtime_ns`` of a file ('' if it is gone): what ``--previous`` compares."""
    import os

    try:
        info = os.stat(path)
    except OSError:
        return ""
    return f"{info.st_size}:{info.st_mtime_ns}"


def _our_entry(block: dict[str, Any], identity: Identity) -> dict[str, Any]:
    for item in block.get("dataFileList") or []:
        if item.get("path") == identity.entry["path"]:
            return dict(item)
    return {}


def classify_unidentified(item: Unidentified, state: str) -> FileResult:
    """A file ingestion refuses (``unselectable``) or cannot build a dataset for."""
    if item.unselectable:
        return FileResult(item.file, "unselectable", key=item.key, reason=item.reason)
    cls = state if state in _REDIS_CLASSES else "missing"
    return FileResult(item.file, cls, key=item.key, reason=item.reason)

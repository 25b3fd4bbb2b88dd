"""A file's dataset identity, computed by the ingestion's own step functions.

No pid derivation, schema selection or file-list layout is re-implemented here: the file
goes through ``new_job`` → ``select_schema`` → ``extract`` → ``build_dataset`` with a dry-run
runtime (nothing written, no hash file), exactly as ``ingest-now --dry-run`` would, and the
identity is read off the result: the dataset's ``pid`` (or, for datasets sent without one,
the ``check_if_dataset_exists_by_metadata_key`` value), its ``sourceFolder`` and the first
file-list entry, which is what ``post_origdatablock`` looks for in a block.

SciCat look-ups made by schema variables (``SC`` sources, e.g. the proposal) are cached for
the whole audit, so their number grows with the number of proposals, not of files.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ..config import Config
from ..errors import IngestError, InputFileError, SchemaError, ScicatUnavailable
from ..ingest.job import Job, new_job
from ..ingest.jobs import JOB_MARKER, job_marker
from ..ingest.runtime import Runtime
from ..ingest.steps import build_dataset, extract, select_schema
from ..scicat import ScicatClient

__all__ = ["CachingClient", "Identity", "Unidentified", "audit_runtime", "identify"]


class CachingClient(ScicatClient):
    """A SciCat client whose schema look-ups (``get_json``) are answered once per URL.

    It also counts the HTTP requests it sends (login and retries included).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lookups: dict[str, Any] = {}
        self.sent = 0

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super()._send(method, url, **kwargs)

    def get_json(self, path: str) -> Any:
        if path not in self._lookups:
            self._lookups[path] = super().get_json(path)
        return self._lookups[path]


def audit_runtime(config: Config, *, checksums: bool) -> Runtime:
    """A dry-run runtime; without ``checksums`` no file is hashed (stats only)."""
    if not checksums:
        handling = config.ingestion.file_handling.model_copy(update={"compute_file_hash": False})
        ingestion = config.ingestion.model_copy(update={"file_handling": handling})
        config = config.model_copy(update={"ingestion": ingestion})
    config = config.as_dry_run()
    return dataclasses.replace(Runtime.from_config(config), scicat=CachingClient(config.scicat))


@dataclass(frozen=True)
class Identity:
    """What ingestion would send to SciCat for this file, as far as finding it goes."""

    file: str
    key: str
    schema_id: str
    pid: str | None
    source_folder: str
    #: ``check_if_dataset_exists_by_metadata_key`` and its value (used when pid is None).
    metadata_key: str
    metadata_value: Any
    #: The data file's entry in the origdatablock ingestion would post (path, size, time, chk).
    entry: dict[str, Any]
    job: Job
    #: ``scicat_job``: the where that finds its job by marker and type; None without one.
    job_lookup: dict[str, Any] | None = None
    #: ``create_missing``: SciCat holds no sample of the file's name (it would be created).
    sample_missing: bool = False


@dataclass(frozen=True)
class Unidentified:
    """A file ingestion would refuse or fail on before writing: why."""

    file: str
    key: str
    reason: str
    unselectable: bool


def identify(rt: Runtime, path: Path) -> Identity | Unidentified:
    """Run the read-only steps on ``path``; transient errors (SciCat down) propagate."""
    try:
        job = new_job(path, rt.config.ingestion.allowed_data_roots)
    except IngestError as exc:
        return Unidentified(str(path), "", exc.message, unselectable=True)
    try:
        job = select_schema(rt, job)
    except (SchemaError, InputFileError) as exc:
        # No schema (or its schema is broken), not HDF5, outside the roots: the worker
        # would refuse it the same way.
        return Unidentified(job["file"], job["key"], exc.message, unselectable=True)
    try:
        job = build_dataset(rt, extract(rt, job))
    except ScicatUnavailable:
        raise  # SciCat down: the whole audit stops (exit 75), it would be wrong everywhere
    except IngestError as exc:  # incl. a file still being written (FileNotReady)
        return Unidentified(job["file"], job["key"], exc.message, unselectable=False)
    dataset = job["dataset"]
    pid = dataset.get("pid")
    if pid and rt.pid_memo is not None:
        # Where a rerun finds a dataset SciCat stored under another pid (ingest/pid_memo.py):
        # without it that file reads "missing" and its dataset an orphan to delete.
        pid = rt.pid_memo.recall(job, str(pid)) or pid
    meta_key = rt.config.ingestion.check_if_dataset_exists_by_metadata_key
    meta_value = (dataset.get("scientificMetadata") or {}).get(meta_key, {})
    meta_value = meta_value.get("value") if isinstance(meta_value, dict) else meta_value
    entry = dict(job["origdatablock"]["dataFileList"][0])
    return Identity(
        file=job["file"],
        key=job["key"],
        schema_id=job["schema_id"],
        pid=pid,
        source_folder=str(dataset.get("sourceFolder") or ""),
        metadata_key=meta_key,
        metadata_value=meta_value,
        entry=entry,
        job=_enqueueable(job),
        job_lookup=_job_lookup(rt, job),
        sample_missing=bool(job.get("new_samples")),
    )


def _job_lookup(rt: Runtime, job: Job) -> dict[str, Any] | None:
    """The ``where`` that finds this file's SciCat job (``ingest/jobs.py``), None without one."""
    section = rt.schemas.by_id(job["schema_id"]).scicat_job
    if section is None:
        return None
    return {f"jobParams.{JOB_MARKER}": job_marker(job, section.type), "type": section.type}


def _enqueueable(job: Job) -> Job:
    """The job as ``new_job`` made it: what ``--enqueue-missing`` hands to the producer."""
    return {
        "file": job["file"],
        "job_id": job.get("job_id"),
        "key": job["key"],
        "message_file": job.get("message_file"),
    }


def absolute_entry_path(entry_path: str, source_folder: str) -> str:
    """A block entry's path on disk (relative entries are under the sourceFolder)."""
    if os.path.isabs(entry_path) or not source_folder:
        return entry_path
    return os.path.normpath(os.path.join(source_folder, entry_path))

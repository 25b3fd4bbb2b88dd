"""The five steps of an ingestion, as plain functions over a JSON-able job.

``select-schema → extract → build-dataset → post-dataset → post-origdatablock``

Each step takes the job (a dict, see ``job.py``) and returns a new dict with its results
added; it is safe to run again with the same input. The Celery tasks and ``ingest-now`` call
exactly these functions. The two POST steps check SciCat before writing, so a rerun after
any crash ends with one dataset and one origdatablock.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import IdempotencyConflict, PermanentError, SchemaError, ScicatRejected
from .file_identity import FileIdentity
from .filelist import build_file_list, refuse_changed_file
from .job import Job, check_data_root, scicat_identity
from .nexus import ReadLimits, check_hdf5, open_nexus
from .nexus_child import read_isolated
from .runtime import Runtime
from .schema import Resolved, builtin_variables, extract_variables, now_iso, render_schema
from .schema.samples import sample_ids
from .scicat.payloads import for_api, missing_required

__all__ = [
    "STEPS",
    "STEP_FUNCTIONS",
    "build_dataset",
    "extract",
    "post_dataset",
    "post_origdatablock",
    "select_schema",
]

STEPS = ("select-schema", "extract", "build-dataset", "post-dataset", "post-origdatablock")
#: Namespace of the pids we derive when a schema gives none (stable across reruns).
PID_NAMESPACE = uuid.UUID("6f1b1c57-2d0e-4c1f-9a52-0f6a3e4b7c10")


def select_schema(rt: Runtime, job: Job) -> Job:
    """Check the file is a readable HDF5 file and pick the first matching schema.

    The file's device/inode/size/mtime are recorded: later steps refuse another file at
    the same path (``file_identity.py``).
    """
    path = Path(job["file"])
    # Again here, not only at enqueue: a message put on the queue by other means (or for a
    # symlink changed since) must not make the worker read files outside the data roots.
    check_data_root(Path(os.path.realpath(path)), rt.config)
    identity = check_hdf5(path)
    schema = rt.schemas.select(str(path))
    return {**job, "schema_id": schema.id, "identity": identity.to_dict()}


def _recorded_identity(rt: Runtime, job: Job) -> FileIdentity | None:
    """The identity select-schema recorded, after checking the path is still in the roots."""
    check_data_root(Path(os.path.realpath(job["file"])), rt.config)
    return FileIdentity.from_dict(job["identity"]) if job.get("identity") else None


def _isolate(rt: Runtime) -> bool:
    """Whether to read the file in a child process (``ingestion.nexus_reading.isolate``)."""
    mode = rt.config.ingestion.nexus_reading.isolate
    if mode != "auto":
        return mode == "always"
    if "synchronous" in rt.extra:
        return bool(rt.extra["synchronous"])
    # Inside a Celery task a crash costs only the pool child (WorkerLost, redelivery cap);
    # anywhere else (ingest-now, the drop-in) it would end the command without a word.
    celery_state = sys.modules.get("celery._state")
    return celery_state is None or celery_state.get_current_task() is None


def _nexus_paths(schema: Any) -> list[str]:
    """Every NeXus path a schema reads (variables, then the sample look-up)."""
    paths = [variable.path for variable in schema.variables.values() if variable.source == "NXS"]
    options = schema.sample_attachment
    if options and options.query_sample_name:
        paths += [options.sample_name_path, options.proposal_id_path]
    return paths


@contextmanager
def _opened(rt: Runtime, job: Job, schema: Any) -> Iterator[Any]:
    path = Path(job["file"])
    expected = _recorded_identity(rt, job)
    limits = ReadLimits.from_config(rt.config)
    if _isolate(rt):
        memory = rt.config.ingestion.nexus_reading.child_memory_mb
        yield read_isolated(path, _nexus_paths(schema), limits, expected, memory)
        return
    with open_nexus(path, limits, expected) as handle:
        yield handle


def extract(rt: Runtime, job: Job) -> Job:
    """Compute the schema's variables from the file, SciCat and templates."""
    schema = rt.schemas.by_id(job["schema_id"])
    path = Path(job["file"])
    # Stable per file: retries and reruns render the same <now>/<ingestor_run_id>.
    run_id = job.get("run_id") or str(uuid.uuid5(PID_NAMESPACE, scicat_identity(job)))
    now = job.get("now") or now_iso()
    builtins = builtin_variables(
        data_file=path,
        schema_id=schema.id,
        run_id=run_id,
        now=now,
        ingestor_files_directory=rt.config.ingestion.file_handling.ingestor_files_directory,
    )
    with _opened(rt, job, schema) as handle:
        registry = extract_variables(schema, handle, builtins, rt.scicat.get_json)
        samples = (
            sample_ids(
                schema.sample_attachment, handle, rt.scicat.get_json, rt.config.scicat.api_endpoints.samples
            )
            if schema.sample_attachment
            else []
        )
    variables = {name: {"value": item.value, "unit": item.unit} for name, item in registry.items()}
    return {**job, "run_id": run_id, "now": now, "variables": variables, "sample_ids": samples}


def _pid(rt: Runtime, job: Job, high_level: dict[str, Any]) -> str | None:
    options = rt.config.dataset
    if not options.allow_dataset_pid:
        return None
    if high_level.get("pid") and not options.generate_dataset_pid:
        return str(high_level["pid"])
    # Upstream generates a random uuid4 here, which duplicates the dataset on every rerun.
    # Derived from what names the file (writer's job id, else its path), not from the queue
    # key: a touched, rewritten or early-enqueued file keeps its pid (issue 12, item 9).
    derived = str(uuid.uuid5(PID_NAMESPACE, scicat_identity(job)))
    prefix = options.dataset_pid_prefix.rstrip("/")
    return f"{prefix}/{derived}" if prefix else derived


_V4_NAMES = {"instrumentId": "instrumentIds", "proposalId": "proposalIds"}


def _dataset(rt: Runtime, job: Job) -> dict[str, Any]:
    schema = rt.schemas.by_id(job["schema_id"])
    registry = {name: Resolved(item["value"], item["unit"]) for name, item in job["variables"].items()}
    high_level, scientific = render_schema(schema, registry)
    options = rt.config.dataset
    # No size/numberOfFiles: SciCat adds each origdatablock's to the dataset ($inc), so
    # sending them too (as upstream does) doubles both.
    dataset: dict[str, Any] = {
        "pid": _pid(rt, job, high_level),
        "isPublished": False,
        "type": "raw",
        "techniques": [],
        **{key: value for key, value in high_level.items() if key != "pid"},
        "scientificMetadata": scientific,
    }
    defaults = {
        "instrumentId": options.default_instrument_id,
        "proposalId": options.default_proposal_id,
        "ownerGroup": options.default_owner_group,
        "accessGroups": options.default_access_groups,
    }
    for key, value in defaults.items():
        # A schema may name the field the v4 way (proposalIds); that counts as set too.
        if dataset.get(key) is None and dataset.get(_V4_NAMES.get(key, key)) is None and value:
            dataset[key] = value
    if job.get("sample_ids"):
        existing = dataset.get("sampleId")
        known = existing if isinstance(existing, list) else [existing] if existing else []
        merged = sorted(set(known) | set(job["sample_ids"]))
        dataset["sampleId"] = merged[0] if len(merged) == 1 else merged
    dataset = {key: value for key, value in dataset.items() if value is not None}
    api = rt.config.scicat.api_version
    dataset = for_api(dataset, api)
    missing = missing_required(dataset, api)
    if missing:
        raise SchemaError(
            f"schema {schema.id}: dataset lacks required field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} for SciCat {api}"
        )
    return dataset


def build_dataset(rt: Runtime, job: Job, progress: Callable[[int], None] | None = None) -> Job:
    """Build the dataset document and the file list (stats and checksums)."""
    dataset = _dataset(rt, job)
    # Upstream makes file paths relative to the `source_folder` variable; schemas without
    # one get paths relative to the dataset's sourceFolder.
    source_folder = job["variables"].get("source_folder", {}).get("value") or dataset.get("sourceFolder")
    datafiles = build_file_list(
        Path(job["file"]),
        rt.config.ingestion.file_handling,
        source_folder=str(source_folder or ""),
        extra_files=[Path(job["message_file"])] if job.get("message_file") else [],
        progress=progress or rt.progress,
        write_hash_files=not rt.dry_run,
        expected=_recorded_identity(rt, job),
    )
    origdatablock: dict[str, Any] = {
        "size": sum(int(entry["size"]) for entry in datafiles),
        "dataFileList": datafiles,
    }
    if rt.config.ingestion.file_handling.compute_file_hash:
        origdatablock["chkAlg"] = rt.config.ingestion.file_handling.file_hash_algorithm
    if dataset.get("ownerGroup"):
        origdatablock["ownerGroup"] = dataset["ownerGroup"]
    if dataset.get("accessGroups"):
        origdatablock["accessGroups"] = dataset["accessGroups"]
    return {**job, "dataset": dataset, "origdatablock": origdatablock}


# -- writing ---------------------------------------------------------------------------------

_IDENTITY_FIELDS = ("sourceFolder", "ownerGroup", "type")


def _is_ours(existing: dict[str, Any], dataset: dict[str, Any]) -> bool:
    """Same file's dataset: identity fields and (when present) the job id agree."""
    if any(existing.get(key) != dataset.get(key) for key in _IDENTITY_FIELDS if key in dataset):
        return False
    ours = dataset.get("scientificMetadata", {}).get("job_id", {}).get("value")
    theirs = (existing.get("scientificMetadata") or {}).get("job_id", {})
    theirs = theirs.get("value") if isinstance(theirs, dict) else theirs
    return ours is None or theirs is None or ours == theirs


def _readable(rt: Runtime, pid: str) -> dict[str, Any] | None:
    """GET a dataset; a 403 (privileged-only account) counts as "cannot tell"."""
    try:
        return rt.scicat.get_dataset(pid)
    except ScicatRejected as exc:
        if exc.status == 403:
            return None
        raise


def _validate_first(rt: Runtime, job: Job) -> None:
    endpoints = rt.config.scicat.api_endpoints
    valid, reason = rt.scicat.is_valid(endpoints.datasets, job["dataset"])
    if not valid:
        raise ScicatRejected(f"SciCat isValid rejected the dataset: {reason}", status=400, detail=reason)


def _find_by_metadata(rt: Runtime, job: Job) -> dict[str, Any] | None:
    key = rt.config.ingestion.check_if_dataset_exists_by_metadata_key
    value = job["dataset"].get("scientificMetadata", {}).get(key, {}).get("value")
    if not rt.config.ingestion.check_if_dataset_exists_by_metadata or value is None:
        return None
    found = rt.scicat.find_datasets({f"scientificMetadata.{key}.value": value})
    return found[0] if found else None


def post_dataset(rt: Runtime, job: Job) -> Job:
    """Create the dataset unless SciCat already has it; record the pid."""
    if job.get("pid"):
        return job
    dataset = job["dataset"]
    pid = dataset.get("pid")
    existing = None
    if pid and rt.config.ingestion.check_if_dataset_exists_by_pid:
        existing = _readable(rt, pid)
    elif not pid:
        existing = _find_by_metadata(rt, job)
    if existing is not None:
        if not _is_ours(existing, dataset):
            raise IdempotencyConflict(
                f"SciCat already has dataset {existing.get('pid')} from another source "
                f"(sourceFolder {existing.get('sourceFolder')!r}); refusing to attach files to it"
            )
        return {**job, "pid": existing.get("pid", pid), "dataset_created": False}
    if rt.config.scicat.validate_before_write:
        _validate_first(rt, job)
    status, body = rt.scicat.create_dataset(dataset)
    if status == 409:
        existing = _readable(rt, str(pid))
        if existing is not None and not _is_ours(existing, dataset):
            raise IdempotencyConflict(f"pid {pid} exists in SciCat with other content")
        return {**job, "pid": pid, "dataset_created": False}
    created_pid = body.get("pid") if isinstance(body, dict) else None
    if not created_pid:
        raise PermanentError(f"SciCat created the dataset but returned no pid: {body!r:.200}")
    return {**job, "pid": created_pid, "dataset_created": True}


def _has_our_files(block: dict[str, Any], paths: set[str]) -> bool:
    return any(entry.get("path") in paths for entry in block.get("dataFileList") or [])


def post_origdatablock(rt: Runtime, job: Job) -> Job:
    """Attach the file list unless the dataset already holds a block with our file."""
    if job.get("origdatablock_id"):
        return job
    pid = job["pid"]
    payload = {"datasetId": pid, **job["origdatablock"]}
    ours = {entry["path"] for entry in payload["dataFileList"][:1]}
    try:
        blocks = rt.scicat.origdatablocks_of(pid)
    except ScicatRejected as exc:
        if exc.status != 403:
            raise
        blocks = []  # a privileged-only account cannot read; the job record guards instead
    for block in blocks:
        if _has_our_files(block, ours):
            refuse_changed_file(block, payload["dataFileList"][0], pid)  # h12: issue 12 item 8
            return {
                **job,
                "origdatablock_id": block.get("_id") or block.get("id"),
                "origdatablock_created": False,
            }
    if rt.config.scicat.validate_before_write:
        valid, reason = rt.scicat.is_valid(rt.config.scicat.api_endpoints.origdatablocks, payload)
        if not valid:
            raise ScicatRejected(
                f"SciCat isValid rejected the origdatablock: {reason}", status=400, detail=reason
            )
    body = rt.scicat.create_origdatablock(payload)
    block_id = body.get("_id") or body.get("id") if isinstance(body, dict) else None
    return {**job, "origdatablock_id": block_id, "origdatablock_created": True}


STEP_FUNCTIONS: dict[str, Callable[[Runtime, Job], Job]] = {
    "select-schema": select_schema,
    "extract": extract,
    "build-dataset": build_dataset,
    "post-dataset": post_dataset,
    "post-origdatablock": post_origdatablock,
}

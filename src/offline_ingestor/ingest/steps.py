"""The six steps of an ingestion, as plain functions over a JSON-able job.

``select-schema → extract → build-dataset → post-dataset → post-origdatablock → post-job``

``post-job`` (``ingest/jobs.py``) is in every chain and passes through without a SciCat call
when the schema has no ``scicat_job`` section: the chain, the task names, the reconciler's
"resume after the last step done" and the metrics stay one list for every schema (a schema
edited between two steps of a file changes nothing in the chain), and a message of the
five-step version continues into it (the task after ``post-origdatablock`` is ``post-job``).

Each step takes the job (a dict, see ``ingest/job.py``) and returns a new dict with its results
added; it is safe to run again with the same input. The Celery tasks and ``ingest-now`` call
exactly these functions. The two POST steps check SciCat before writing, so a rerun after
any crash ends with one dataset and one origdatablock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from ..files.filelist import build_file_list
from ..files.identity import FileIdentity
from ..files.nexus import ReadLimits, check_hdf5, open_nexus
from ..files.nexus_child import read_isolated
from ..schema import Resolved, builtin_variables, extract_variables, now_iso, render_schema
from ..schema.samples import SampleSearch, derived_sample_id, find_samples
from ..scicat.payloads import V4_NAMES, for_api, missing_required
from .job import Job, check_within_roots, scicat_identity
from .jobs import post_job
from .runtime import Runtime
from .writes import post_dataset, post_origdatablock

__all__ = [
    "STEPS",
    "STEP_FUNCTIONS",
    "STEP_OUTPUT",
    "WRITE_STEPS",
    "build_dataset",
    "extract",
    "post_dataset",
    "post_job",
    "post_origdatablock",
    "select_schema",
    "with_inputs",
]

STEPS = ("select-schema", "extract", "build-dataset", "post-dataset", "post-origdatablock", "post-job")
# ``job["first_write"]`` is set (True) in a write step's input by the step executor, never
# saved: this execution is the first that may write for this step of this chain (not a
# redelivery after a lost process, no earlier attempt sent a write). A step may then skip
# checks for its own earlier writes; any doubt leaves the flag out and the step checks SciCat.

#: Namespace of the pids we derive when a schema gives none (stable across reruns).
PID_NAMESPACE = uuid.UUID("6f1b1c57-2d0e-4c1f-9a52-0f6a3e4b7c10")


def select_schema(rt: Runtime, job: Job) -> Job:
    """Check the file is a readable HDF5 file and pick the first matching schema.

    The file's device/inode/size/mtime are recorded: later steps refuse another file at
    the same path (``files/identity.py``).
    """
    path = Path(job["file"])
    # Again here, not only at enqueue: a message put on the queue by other means (or for a
    # symlink changed since) must not make the worker read files outside the data roots.
    check_within_roots(Path(os.path.realpath(path)), rt.config.ingestion.allowed_data_roots)
    identity = check_hdf5(path)
    schema = rt.schemas.select(str(path))
    return {**job, "schema_id": schema.id, "identity": identity.to_dict()}


def _recorded_identity(rt: Runtime, job: Job) -> FileIdentity | None:
    """The identity select-schema recorded, after checking the path is still in the roots."""
    check_within_roots(Path(os.path.realpath(job["file"])), rt.config.ingestion.allowed_data_roots)
    return FileIdentity.from_dict(job["identity"]) if job.get("identity") else None


def _isolate(rt: Runtime) -> bool:
    """Whether to read the file in a child process (``ingestion.nexus_reading.isolate``)."""
    mode = rt.config.ingestion.nexus_reading.isolate
    if mode != "auto":
        return mode == "always"
    # In a worker a crash costs only the pool child (WorkerLost, redelivery cap); in a
    # command (ingest-now, the drop-in) it would end the command without a word.
    return rt.command


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
        registry = extract_variables(schema, handle, builtins, rt.lookup)
        options = schema.sample_attachment
        search = (
            find_samples(options, handle, rt.lookup, rt.config.scicat.api_endpoints.samples)
            if options
            else SampleSearch(None, None, [])
        )
    variables = {name: {"value": item.value, "unit": item.unit} for name, item in registry.items()}
    extracted: Job = {**job, "run_id": run_id, "now": now, "variables": variables, "sample_ids": search.ids}
    if options and options.create_missing and not search.ids and search.name is not None:
        # Created by post-dataset, once (ingest/samples.py); the dataset names it already.
        sample_id = derived_sample_id(search.proposal, search.name)
        extracted["sample_ids"] = [sample_id]
        extracted["new_samples"] = [
            {"sampleId": sample_id, "name": search.name, "proposalId": search.proposal}
        ]
    return extracted


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
        if dataset.get(key) is None and dataset.get(V4_NAMES.get(key, key)) is None and value:
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
        extra_files=[Path(message)] if (message := job.get("message_file")) else [],
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


STEP_FUNCTIONS: dict[str, Callable[[Runtime, Job], Job]] = {
    "select-schema": select_schema,
    "extract": extract,
    "build-dataset": build_dataset,
    "post-dataset": post_dataset,
    "post-origdatablock": post_origdatablock,
    "post-job": post_job,
}
#: The steps that write to SciCat: a dry run builds everything and skips these.
WRITE_STEPS = ("post-dataset", "post-origdatablock", "post-job")
#: The job key each step adds; the next step needs it.
STEP_OUTPUT = {
    "select-schema": "schema_id",
    "extract": "variables",
    "build-dataset": "dataset",
    "post-dataset": "pid",
    "post-origdatablock": "origdatablock_id",
    "post-job": "scicat_job_id",
}


StepFunction = Callable[[Runtime, Job], Job]


def with_inputs(
    rt: Runtime, job: Job, step: str, functions: Mapping[str, StepFunction] = STEP_FUNCTIONS
) -> Job:
    """``job`` with the results of every step before ``step``, recomputed if missing.

    A worker normally finds them in the job document; after the document was lost (Redis
    restart without persistence, TTL) the earlier steps run again here. They are safe to
    repeat, and a lost ``pid`` is found again in SciCat by ``post-dataset``.
    """
    earlier = STEPS[: STEPS.index(step)]
    missing = next((index for index, name in enumerate(earlier) if STEP_OUTPUT[name] not in job), None)
    for name in earlier[missing:] if missing is not None else ():
        job = functions[name](rt, job)
    return job

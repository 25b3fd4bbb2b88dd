"""``post-job`` (ADR-004): one SciCat job per file, after its dataset is complete, exactly once.

SciCat chooses a job's id, so a POST repeated after a lost answer, a redelivery or a rerun
would create a second job. Each job therefore carries a marker in its ``jobParams``
(``offlineIngestorKey``: derived from what names the file, as the dataset pid is, and the job
type), and the step looks the marker up before every POST. The write is announced before it
is sent like the other writes (``ingest/executor.py``): a retry or redelivery after a write
that got no answer waits out its in-flight window, then looks again, and a second copy of the
step's message may not write while the first copy's write may still land.

Schemas without a ``scicat_job`` section pass through this step without a call to SciCat.
A job SciCat refuses (an unknown type, no right to create it) fails the file at this step;
the dataset and its files are complete and stay as they are.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import metrics
from ..errors import IdempotencyConflict, SchemaError, ScicatUnavailable
from ..logs import get_logger
from ..schema import Resolved
from ..schema.models import ScicatJob
from ..schema.templates import UnresolvedVariable, render
from .job import Job, scicat_identity
from .runtime import Runtime

__all__ = ["JOB_MARKER", "job_marker", "job_payload", "post_job"]

log = get_logger("offline_ingestor.jobs")

#: The ``jobParams`` key holding the file's marker (what the look-up searches for).
JOB_MARKER = "offlineIngestorKey"
_JOB_NAMESPACE = uuid.UUID("0c5d3a52-8e0f-4f6b-a2f4-5be1d6c2f9a3")


def job_marker(job: Job, job_type: str) -> str:
    """The marker of this file's job of ``job_type``: the same for every run of the file.

    Derived from the writer's job id, else the path (``scicat_identity``, as the dataset pid),
    not from the queue key: a touched file (another key, the same dataset) gets no second job.
    """
    return str(uuid.uuid5(_JOB_NAMESPACE, f"{scicat_identity(job)}\0{job_type}"))


def _section(rt: Runtime, job: Job) -> ScicatJob | None:
    return rt.schemas.by_id(job["schema_id"]).scicat_job


def _render(section: ScicatJob, job: Job, pid: str, template: Any, where: str) -> Any:
    registry = {name: Resolved(item["value"], item["unit"]) for name, item in job["variables"].items()}
    registry["dataset_pid"] = Resolved(pid)
    try:
        return render(template, registry).value
    except UnresolvedVariable as exc:
        raise SchemaError(f"scicat_job.{where}: <{exc.args[0]}> is not a variable") from None


def job_payload(rt: Runtime, job: Job, pid: str) -> dict[str, Any] | None:
    """The exact body ``post-job`` POSTs for dataset ``pid`` (v3 or v4 shape); None without a section."""
    section = _section(rt, job)
    if section is None:
        return None
    params = {
        name: _render(section, job, pid, value, f"job_params.{name}")
        for name, value in section.job_params.items()
    }
    params[JOB_MARKER] = job_marker(job, section.type)
    owner = _render(section, job, pid, section.owner_group, "owner_group") if section.owner_group else None
    owner = owner or job.get("dataset", {}).get("ownerGroup")
    email = section.contact_email and _render(section, job, pid, section.contact_email, "contact_email")
    datasets = [{"pid": pid, "files": []}]
    payload: dict[str, Any] = {"type": section.type}
    if rt.config.scicat.api_version == "v4":
        payload["jobParams"] = {**params, "datasetList": datasets}
        if owner:
            payload["ownerGroup"] = owner
        if email:
            payload["contactEmail"] = email
        return payload
    # v3: the dataset list is a top-level field; the owner group travels in jobParams.
    payload["jobParams"] = {**params, **({"ownerGroup": owner} if owner else {})}
    payload["datasetList"] = datasets
    if email:
        payload["emailJobInitiator"] = email
    return payload


def _job_id(found: dict[str, Any]) -> str:
    return str(found.get("id") or found.get("_id") or "")


def post_job(rt: Runtime, job: Job) -> Job:
    """Create this file's SciCat job unless SciCat holds one with its marker already."""
    if job.get("scicat_job_id"):
        return job
    payload = job_payload(rt, job, str(job["pid"]))
    if payload is None:
        return {**job, "scicat_job_id": None}
    marker = payload["jobParams"][JOB_MARKER]
    found = rt.scicat.find_jobs({f"jobParams.{JOB_MARKER}": marker, "type": payload["type"]})
    ids = sorted({_job_id(item) for item in found if isinstance(item, dict)})
    if len(ids) > 1:
        metrics.count_conflict("duplicate-jobs")
        raise IdempotencyConflict(
            f"SciCat holds {len(ids)} jobs of type {payload['type']!r} for this file "
            f"({JOB_MARKER}={marker}): {', '.join(ids)}",
            hint="keep one: delete the others as an admin (DELETE /api/v3/jobs/<id>)",
        )
    if ids:
        log.info("scicat.job_found", dataset_pid=job["pid"], file=job.get("file"), job=ids[0])
        metrics.count_object("job", "found")
        return {**job, "scicat_job_id": ids[0], "scicat_job_created": False}
    body = rt.scicat.create_job(payload)
    created = _job_id(body) if isinstance(body, dict) else ""
    if not created:
        # Stored or not, this answer cannot tell: the retry looks the marker up first.
        raise ScicatUnavailable(f"SciCat answered the job POST without an id: {body!r:.200}")
    metrics.count_object("job", "created")
    log.info("scicat.job_created", dataset_pid=job["pid"], file=job.get("file"), job=created)
    return {**job, "scicat_job_id": created, "scicat_job_created": True}

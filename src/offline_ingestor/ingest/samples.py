"""Samples a file names and SciCat lacks (``sample_attachment.create_missing``, ADR-003): once.

``extract`` looks the name up (``schema/samples.py``); when SciCat has no sample of that name
in the file's proposal, the file's dataset is attached to the id a new sample *would* get,
derived from the proposal and the name (:func:`~offline_ingestor.schema.samples.derived_sample_id`),
and the sample is listed in ``new_samples``. ``post-dataset`` creates those before the
dataset, exactly once however many workers ingest files naming it:

* the id is derived, so every writer sends the same id and SciCat's unique id refuses a second
  instance (the real backend answers 500 to that duplicate, not 409: either is followed by a
  GET, and a sample found there with our name and proposal is ours);
* a GET of the id comes first; writers of one sample take a lease per sample
  (``ingest/sample_lease.py``; Redis in the worker), and a writer whose POST got no answer keeps
  it for the POST's in-flight window, as a dataset write's window is kept;
* each POST is announced before it is sent (``post-dataset``'s write, ``ingest/executor.py``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .. import metrics
from ..errors import IdempotencyConflict, SchemaError, ScicatUnavailable
from ..logs import get_logger
from ..schema import Resolved
from ..schema.templates import UnresolvedVariable, render
from .job import Job
from .runtime import Runtime

__all__ = ["ensure_samples", "sample_payloads"]

log = get_logger("offline_ingestor.samples")

#: Beyond the request timeout, as the executor's ORPHAN_MARGIN_S.
_MARGIN_S = 2.0


def _render(job: Job, template: Any, where: str) -> Any:
    registry = {name: Resolved(item["value"], item["unit"]) for name, item in job["variables"].items()}
    try:
        return render(template, registry).value
    except UnresolvedVariable as exc:
        raise SchemaError(f"sample_attachment.{where}: <{exc.args[0]}> is not a variable") from None


def sample_payloads(rt: Runtime, job: Job) -> list[dict[str, Any]]:
    """The exact bodies ``post-dataset`` POSTs for the file's new samples (none: ``[]``)."""
    options = rt.schemas.by_id(job["schema_id"]).sample_attachment
    if options is None or not job.get("new_samples"):
        return []
    dataset = job.get("dataset", {})
    owner = _render(job, options.owner_group, "owner_group") if options.owner_group else None
    access = _render(job, options.access_groups, "access_groups") if options.access_groups else None
    fields = {name: _render(job, value, f"fields.{name}") for name, value in options.fields.items()}
    payloads = []
    for new in job["new_samples"]:
        payload = {
            **fields,
            "sampleId": new["sampleId"],
            "sampleName": str(new["name"]),
            "description": new["name"],
            "proposalId": str(new["proposalId"]),
            "ownerGroup": owner or dataset.get("ownerGroup"),
            "accessGroups": ([access] if isinstance(access, str) else access)
            or dataset.get("accessGroups")
            or [],
        }
        payloads.append({key: value for key, value in payload.items() if value is not None})
    return payloads


def _groups(value: Any) -> list[Any] | None:
    return [value] if isinstance(value, str) else value


def _ours(rt: Runtime, payload: dict[str, Any]) -> bool:
    """Whether SciCat holds the sample under our id (for our name and proposal)."""
    found = rt.scicat.get_sample(payload["sampleId"])
    if found is None:
        return False
    if (
        found.get("description") != payload["description"]
        or str(found.get("proposalId")) != payload["proposalId"]
    ):
        raise IdempotencyConflict(
            f"SciCat's sample {payload['sampleId']} is not this file's sample "
            f"({payload['description']!r} of proposal {payload['proposalId']}): it is "
            f"{found.get('description')!r} of proposal {found.get('proposalId')}",
            hint="nothing was written; an admin must rename or remove that sample",
        )
    return True


def _take_lease(rt: Runtime, sample_id: str, holder: str, ttl_s: float) -> None:
    """Wait for the sample's lease: its holder ends within one request, or its window, normally."""
    deadline = time.monotonic() + 2 * ttl_s
    while (wait := rt.sample_lease.acquire(sample_id, holder, ttl_s)) > 0:
        if time.monotonic() + min(wait, 0.2) > deadline:
            raise ScicatUnavailable(f"sample {sample_id} is being created by another writer; retrying")
        time.sleep(min(wait, 0.2))


def _create(rt: Runtime, payload: dict[str, Any]) -> bool:
    """POST one sample under its lease; True when this call created it."""
    sample_id = payload["sampleId"]
    if _ours(rt, payload):
        return False
    holder, ttl = uuid.uuid4().hex, rt.config.scicat.timeout + _MARGIN_S
    _take_lease(rt, sample_id, holder, ttl)
    release = True
    try:
        if _ours(rt, payload):  # the lease's last holder made it while we waited
            return False
        try:
            status, _ = rt.scicat.create_sample(payload)
        except ScicatUnavailable as exc:
            if exc.may_still_land:
                # No answer: the POST may still be stored. Nobody looks before its window ends.
                rt.sample_lease.keep(sample_id, holder, ttl)
                release = False
                raise
            if exc.status == 500 and _ours(rt, payload):
                return False  # the real backend's answer to a duplicate id: someone made it
            raise
        if status == 409:
            if not _ours(rt, payload):
                raise ScicatUnavailable(f"SciCat answered 409 for sample {sample_id} but then 404 to its GET")
            return False
        return True
    finally:
        if release:
            rt.sample_lease.release(sample_id, holder)


def ensure_samples(rt: Runtime, job: Job) -> None:
    """Create the file's new samples that SciCat does not hold yet (before its dataset)."""
    for payload in sample_payloads(rt, job):
        created = _create(rt, payload)
        metrics.count_object("sample", "created" if created else "found")
        log.info(
            "scicat.sample_created" if created else "scicat.sample_found",
            sample_id=payload["sampleId"],
            sample_name=payload["description"],
            file=job.get("file"),
        )

"""Jobs (v3 and v4) and sample creation, with the real backend's answers.

Observed on the backend of ``scicat-backend-783086a`` (``tests/real_scicat``):

* ``POST /api/v{3,4}/jobs``: 400 ``Invalid job type: X`` for a type not in the job
  configuration; 422 ``Datasets with pid X do not exist.`` for an unknown dataset in the list;
  201 with the job (v3: ``datasetList`` top level, ``ownerGroup`` inside ``jobParams``,
  ``jobParams.username`` added; v4: ``jobParams.datasetList``, top-level ``ownerGroup``).
* ``GET /api/v4/jobs?filter={"where": ...}`` filters (dotted ``jobParams.*`` paths too);
  ``GET /api/v3/jobs`` refuses any ``where`` (400 ``Property where.X should not exist in the
  filter object``); ``GET /api/v3/jobs/fullquery?fields={...}`` filters.
* ``POST /api/v3/samples``: 400 without ``sampleName``; a ``sampleId`` that exists answers
  **500** ``"Internal server error"`` (a duplicate key in the database, not a 409);
  ``GET /api/v3/samples/<id>``: 404 ``Sample: <id> not found``.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from . import store as st

__all__ = ["DEFAULT_JOB_TYPES", "Objects"]

JsonDict = dict[str, Any]
Reply = tuple[int, Any]
#: The job types of the stand-in's job configuration (as the real tier's ``JOB_CONFIG``).
DEFAULT_JOB_TYPES = ("ingest-followup",)


def _err(status: int, message: Any, error: str | None = None) -> Reply:
    body: JsonDict = {"message": message, "statusCode": status}
    if error:
        body["error"] = error
    return status, body


def _v3_job(doc: JsonDict) -> JsonDict:
    params = {k: v for k, v in doc["jobParams"].items() if k != "datasetList"}
    return {
        "_id": doc["_id"],
        "id": doc["id"],
        "emailJobInitiator": doc.get("contactEmail"),
        "type": doc["type"],
        "creationTime": doc["createdAt"],
        "jobParams": params,
        "jobStatusMessage": doc["statusCode"],
        "datasetList": doc["jobParams"].get("datasetList", []),
        "jobResultObject": {},
    }


class Objects:
    """The handlers; ``Api`` routes to them (``controllers.py``)."""

    def __init__(self, store: st.Store, policy: st.Policy) -> None:
        self.store, self.policy = store, policy
        self.job_types: set[str] = set(DEFAULT_JOB_TYPES)
        self.jobs: list[JsonDict] = []

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, version: str, principal: st.Principal | None, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return _err(400, ["type must be a string"], "Bad Request")
        if body["type"] not in self.job_types:
            return 400, {"status": 400, "message": f"Invalid job type: {body['type']}"}
        params = dict(body.get("jobParams") or {})
        if version == "3":
            datasets = body.get("datasetList") or []
            owner = params.get("ownerGroup")
            params = {"username": principal.username if principal else None, **params}
            email = body.get("emailJobInitiator")
        else:
            datasets = params.get("datasetList") or []
            owner = body.get("ownerGroup")
            email = body.get("contactEmail")
        if principal is None:
            return _err(403, "Unauthorized to create this job.", "Forbidden")
        with self.store.lock:
            for item in datasets:
                if not isinstance(item, dict) or item.get("pid") not in self.store.datasets:
                    pid = item.get("pid") if isinstance(item, dict) else item
                    return _err(422, f"Datasets with pid {pid} do not exist.", "Unprocessable Entity")
            if not self.policy.admin(principal) and owner not in principal.groups:
                return _err(403, "Invalid new job. User needs to belong to job owner group.", "Forbidden")
            now = st.iso_now()
            job_id = str(uuid.uuid4())
            doc: JsonDict = {
                "createdBy": principal.username,
                "updatedBy": principal.username,
                "createdAt": now,
                "updatedAt": now,
                "ownerGroup": owner,
                "accessGroups": [],
                "isPublished": False,
                "_id": job_id,
                "id": job_id,
                "type": body["type"],
                "statusCode": "jobSubmitted",
                "statusMessage": "Job submitted.",
                "jobParams": {**params, "datasetList": datasets} if version == "3" else params,
                "contactEmail": email or principal.email,
                "jobResultObject": {},
            }
            self.jobs.append(doc)
            return 201, copy.deepcopy(_v3_job(doc) if version == "3" else doc)

    def _readable_jobs(self, principal: st.Principal | None) -> list[JsonDict]:
        if principal is None:
            return []
        admin = self.policy.admin(principal)
        return [doc for doc in self.jobs if admin or doc.get("ownerGroup") in principal.groups]

    def list_jobs(self, version: str, principal: st.Principal | None, query: dict[str, list[str]]) -> Reply:
        raw = (query.get("filter") or ["{}"])[0]
        try:
            flt = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return _err(400, "Invalid filter")
        where = flt.get("where") if isinstance(flt, dict) else None
        if version == "3" and isinstance(where, dict) and where:
            name = next(iter(where))
            inner = where[name]
            key = f"{name}.{next(iter(inner))}" if isinstance(inner, dict) and inner else name
            return _err(400, f"Property where.{key} should not exist in the filter object", "Bad Request")
        with self.store.lock:
            found = st.apply_filter(self._readable_jobs(principal), {"where": where or {}})
            return 200, [copy.deepcopy(_v3_job(d) if version == "3" else d) for d in found]

    def jobs_fullquery(self, principal: st.Principal | None, query: dict[str, list[str]]) -> Reply:
        raw = (query.get("fields") or ["{}"])[0]
        try:
            fields = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return _err(400, "Invalid fields")
        # Stored in v4 form: a v3 field inside jobParams is found there too.
        with self.store.lock:
            found = st.apply_filter(self._readable_jobs(principal), {"where": fields})
            return 200, [copy.deepcopy(_v3_job(d)) for d in found]

    # -- samples ----------------------------------------------------------------------------
    def create_sample(self, principal: st.Principal | None, body: Any) -> Reply:
        if principal is None:
            return _err(403, "Forbidden resource", "Forbidden")
        name = body.get("sampleName") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(name, str) or not name:
            return _err(400, ["sampleName should not be empty", "sampleName must be a string"], "Bad Request")
        with self.store.lock:
            sample_id = str(body.get("sampleId") or uuid.uuid4())
            if any(doc.get("sampleId") == sample_id for doc in self.store.samples):
                return 500, "Internal server error"  # E11000 duplicate key, unmapped (observed)
            now = st.iso_now()
            doc = {
                "isPublished": False,
                **copy.deepcopy(body),
                "sampleId": sample_id,
                "createdBy": principal.username,
                "updatedBy": principal.username,
                "createdAt": now,
                "updatedAt": now,
                "_id": sample_id,
            }
            self.store.samples.append(doc)
            return 201, copy.deepcopy(doc)

    def get_sample(self, principal: st.Principal | None, sample_id: str) -> Reply:
        with self.store.lock:
            doc = next((d for d in self.store.samples if d.get("sampleId") == sample_id), None)
            if doc is None:
                return _err(404, f"Sample: {sample_id} not found", "Not Found")
            if principal is None and doc.get("isPublished") is not True:
                return _err(403, "Forbidden resource", "Forbidden")
            return 200, copy.deepcopy(doc)

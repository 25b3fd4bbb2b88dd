"""The SciCat routes of CONTRACT.md §2: Nest's guard -> pipes -> handler order (§2.2/§2.3)."""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

from . import store as st
from . import validation as va
from .objects import Objects

__all__ = ["DEFAULT_ACCOUNTS", "Api", "Call", "JsonDict", "Reply"]

JsonDict = dict[str, Any]
Reply = tuple[int, Any]  # (status, JSON-able body); body None = empty body, as Nest sends null
_Check = Callable[[st.Principal | None, JsonDict], bool]

#: The functional accounts of the recordings (observed-accounts/README.md): with the default
#: groups, ``ingestor`` is admin, ``privingest`` privileged-only, ``owningest`` may create with
#: a pid in its own group, ``user1`` may create in its own group without a pid.
DEFAULT_ACCOUNTS = (
    st.Account("admin", "adminpw", roles=["admin"], global_access=True),
    st.Account("ingestor", "ingestorpw", roles=["ingestor"], global_access=True),
    st.Account("user1", "user1pw", roles=["group1"]),
    st.Account("owningest", "owningestpw", roles=["owngroup"]),
    st.Account("privingest", "privingestpw", roles=["privgroup"]),
)


def _err(status: int, message: Any, error: str | None = None) -> Reply:
    body: JsonDict = {"message": message}
    if error is None:
        error = HTTPStatus(status).phrase
    if error:
        body["error"] = error
    body["statusCode"] = status
    return status, body


FORBIDDEN_RESOURCE = _err(403, "Forbidden resource")
UNAUTHORIZED_ACCESS = _err(403, "Unauthorized access")


def _mongoose_required(paths: dict[str, Any]) -> JsonDict:
    """The raw mongoose ``ValidationError`` the v3 controller leaks as a 500 body (observed)."""
    errors: JsonDict = {}
    for path, value in paths.items():
        msg = f"Path `{path}` is required."
        props: JsonDict = {"message": msg, "type": "required", "path": path}
        detail: JsonDict = {
            "name": "ValidatorError",
            "message": msg,
            "properties": props,
            "kind": "required",
            "path": path,
        }
        if value is not None:
            props["value"] = detail["value"] = value
        if isinstance(value, str):
            props["length"] = len(value)  # observed for pid "" (mongoose copies String props)
        errors[path] = detail
    text = ", ".join(f"{p}: Path `{p}` is required." for p in paths)
    return {
        "errors": errors,
        "_message": "DatasetClass validation failed",
        "name": "ValidationError",
        "message": f"DatasetClass validation failed: {text}",
    }


def json_error_message(text: str, err: json.JSONDecodeError) -> str:
    """Re-word Python's JSON error the way V8's ``JSON.parse`` (Node 20) words it."""
    pos, msg = err.pos, err.msg
    before = text[:pos].rstrip()
    if pos >= len(text.rstrip()) and not msg.startswith(("Extra", "Unterminated")):
        return "Unexpected end of JSON input"
    if msg.startswith("Expecting property name"):
        if before.endswith("{"):
            return f"Expected property name or '}}' in JSON at position {pos}"
        return f"Expected double-quoted property name in JSON at position {pos}"
    if msg.startswith("Expecting ':'"):
        return f"Expected ':' after property name in JSON at position {pos}"
    if msg.startswith("Expecting ','"):
        depth: list[str] = []
        in_str = esc = False
        for ch in text[:pos]:  # the innermost open bracket decides V8's wording
            if in_str:
                esc, in_str = (not esc and ch == "\\"), in_str and (esc or ch != '"')
            elif ch == '"':
                in_str = True
            elif ch in "[{":
                depth.append(ch)
            elif ch in "]}" and depth:
                depth.pop()
        if depth and depth[-1] == "[":
            return f"Expected ',' or ']' after array element in JSON at position {pos}"
        return f"Expected ',' or '}}' after property value in JSON at position {pos}"
    if msg.startswith("Unterminated string"):
        return f"Unterminated string in JSON at position {len(text)}"
    if msg.startswith("Extra data"):
        return f"Unexpected non-whitespace character after JSON at position {pos}"
    if msg.startswith("Invalid control character"):
        return f"Bad control character in string literal in JSON at position {pos}"
    return f"Unexpected token '{text[pos]}', \"{text}\" is not valid JSON"


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"Expecting value {name}", name, 0)


@dataclass
class Call:
    """One routed request as the handlers see it."""

    version: str
    principal: st.Principal | None
    params: list[str]
    query: dict[str, list[str]]
    body: Any


class Api:
    """The controllers: same checks in the same order as the backend (see CONTRACT.md §2)."""

    def __init__(
        self, store: st.Store, policy: st.Policy, pid_prefix: str | None, pid_regex: str | None
    ) -> None:
        self.store, self.policy = store, policy
        #: Not the backend: a SciCat deployment or proxy that stores client pids prefixed.
        self.rewrite_pid_prefix = ""
        #: Not the backend either: a deployment or proxy that drops client pids (SciCat makes one).
        self.drop_client_pids = False
        #: Per request thread; ``crash_before_totals``: store the block, skip the dataset totals.
        self.request_local = threading.local()
        self.pid_prefix = (pid_prefix or "undefined").rstrip("/") or "undefined"
        self.pid_regex = re.compile(pid_regex) if pid_regex else None
        #: Jobs and sample creation (``objects.py``).
        self.objects = Objects(store, policy)
        P = "{}"  # a placeholder for one percent-decoded path segment
        h = self
        # Order matters where Nest's would: literal segments before ":pid".
        self.routes: list[tuple[str, str, tuple[str, ...], Callable[[Call], Reply]]] = [
            ("POST", "34", ("datasets",), h.create_dataset),
            ("POST", "34", ("datasets", "isvalid"), h.dataset_is_valid),
            ("GET", "34", ("datasets",), h.list_datasets),
            ("GET", "34", ("datasets", "findone"), h.find_one),
            ("GET", "34", ("datasets", "count"), h.count),
            ("GET", "34", ("datasets", P), h.get_dataset),
            ("PATCH", "34", ("datasets", P), h.patch_dataset),
            ("DELETE", "34", ("datasets", P), h.delete_dataset),
            ("GET", "3", ("datasets", P, "origdatablocks"), h.dataset_odbs),
            ("POST", "3", ("datasets", P, "origdatablocks"), h.create_scoped_odb),
            ("POST", "3", ("datasets", P, "origdatablocks", "isvalid"), h.scoped_odb_is_valid),
            ("POST", "34", ("origdatablocks",), h.create_odb),
            ("GET", "3", ("origdatablocks",), h.list_origdatablocks),
            ("POST", "34", ("origdatablocks", "isvalid"), h.odb_is_valid),
            ("GET", "3", ("auth", "whoami"), h.whoami),
            ("GET", "3", ("users", "my", "self"), h.my_self),
            ("GET", "3", ("health",), h.health),
            ("GET", "3", ("proposals", P), h.get_proposal),
            ("GET", "3", ("instruments",), h.list_instruments),
            ("GET", "3", ("samples",), h.list_samples),
            ("POST", "3", ("samples",), lambda c: h.objects.create_sample(c.principal, c.body)),
            ("GET", "3", ("samples", P), lambda c: h.objects.get_sample(c.principal, c.params[0])),
            ("POST", "34", ("jobs",), lambda c: h.objects.create_job(c.version, c.principal, c.body)),
            ("GET", "3", ("jobs", "fullquery"), lambda c: h.objects.jobs_fullquery(c.principal, c.query)),
            ("GET", "34", ("jobs",), lambda c: h.objects.list_jobs(c.version, c.principal, c.query)),
        ]

    def route_of(self, method: str, path: str) -> str:
        """The kind of a request: method and route template, e.g. ``GET /api/v3/datasets/{}``."""
        segs = [s for s in path.partition("?")[0].split("/")[1:] if s]
        low = [s.lower() for s in segs]
        if len(low) >= 2 and low[0] == "api" and low[1] in ("v3", "v4"):
            version, rest = low[1][1], low[2:]
            if method == "POST" and version == "3" and rest in (["auth", "login"], ["users", "login"]):
                return f"POST /api/v3/{'/'.join(rest)}"
            for r_method, versions, pattern, _ in self.routes:
                if r_method != method or version not in versions or len(pattern) != len(rest):
                    continue
                if all(p == "{}" or p == s for p, s in zip(pattern, rest, strict=True)):
                    return f"{method} /api/v{version}/{'/'.join(pattern)}"
        return f"{method} (no route)"

    def dispatch(self, method: str, url: str, auth: str | None, raw: bytes, ctype: str) -> Reply:
        """Route one request; body parsing comes first as Express's json middleware does."""
        path, _, qs = url.partition("?")
        body: Any = {}
        if raw and "json" in ctype.lower():
            text = raw.decode("utf-8", "replace")
            try:
                body = json.loads(text, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                return _err(400, json_error_message(text, exc))
        segs = path.split("/")[1:]
        if len(segs) > 1 and segs[-1] == "":
            segs.pop()  # non-strict routing: one trailing slash is ignored
        low = [s.lower() for s in segs]
        if len(low) >= 2 and low[0] == "api" and low[1] in ("v3", "v4"):
            version, rest, low_rest = low[1][1], segs[2:], low[2:]
            logins = (["auth", "login"], ["users", "login"])
            if method == "POST" and version == "3" and low_rest in logins:
                return self.login(body, legacy=low_rest[0] == "users")
            for r_method, versions, pattern, handler in self.routes:
                if r_method != method or version not in versions or len(pattern) != len(rest):
                    continue
                if all(p == "{}" or p == s for p, s in zip(pattern, low_rest, strict=True)):
                    who = self.store.principal(_bearer(auth))
                    if who == "expired":
                        return _err(401, "SESSION_EXPIRED", "Unauthorized")
                    params = [unquote(s) for p, s in zip(pattern, rest, strict=True) if p == "{}"]
                    principal = who if isinstance(who, st.Principal) else None
                    return handler(Call(version, principal, params, parse_qs(qs), body))
        return _err(404, f"Cannot {method} {url}")

    # -- auth -------------------------------------------------------------------------------
    def login(self, body: Any, legacy: bool) -> Reply:
        user = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(user, str) or not self.store.check_password(user, password):
            return 401, {"message": "Unauthorized", "statusCode": 401}
        if legacy:
            return 201, None  # the deprecated stub authenticates, then returns null (observed)
        token = self.store.issue_token(user)
        doc = self.store.user_doc(user)
        ttl = int(self.store.token_ttl_s)
        return 201, {
            "access_token": token,
            "id": token,
            "expires_in": ttl,
            "ttl": ttl,
            "created": st.iso_now(),
            "userId": doc["_id"],
            "user": doc,
        }

    def whoami(self, c: Call) -> Reply:
        if c.principal is None:
            return 200, None
        doc = self.store.user_doc(c.principal.username)
        return 200, {
            "_id": doc["_id"],
            "username": doc["username"],
            "email": doc["email"],
            "currentGroups": list(c.principal.groups),
            "authStrategy": "local",
        }

    def my_self(self, c: Call) -> Reply:
        if c.principal is None:
            return FORBIDDEN_RESOURCE
        return 200, self.store.user_doc(c.principal.username)

    def health(self, c: Call) -> Reply:
        up = {"mongodb": {"status": "up"}}
        return 200, {"status": "ok", "info": up, "error": {}, "details": up}

    # -- datasets ---------------------------------------------------------------------------
    def _v3_prepare(self, body: Any) -> tuple[tuple[va.Prop, ...], Any]:
        """Pick the DTO by type; raw/derived DTOs derive a missing datasetName (§3.4)."""
        body = va.transform_body(body)
        if not isinstance(body, dict):
            return va.DATASET_V4, body
        dto = va.select_v3_dto(body)
        if dto is not va.DATASET_V4 and body.get("datasetName") is None:
            folder = body.get("sourceFolder")
            if isinstance(folder, str):
                body = {**body, "datasetName": "/".join([p for p in folder.split("/") if p][-2:])}
        return dto, body

    def _pid_ok(self, body: Any) -> bool:
        pid = body.get("pid") if isinstance(body, dict) else None
        return self.pid_regex is None or not pid or bool(self.pid_regex.search(str(pid)))

    def create_dataset(self, c: Call) -> Reply:
        if not self.policy.has_create_rule(c.principal):
            return FORBIDDEN_RESOURCE
        v3 = c.version == "3"
        if v3:
            dto, body = self._v3_prepare(c.body)
            errors = va.validate(dto, body)
            if errors:
                return 400, va.v3_400(errors)
        else:
            body = va.transform_body(c.body)
            errors = va.validate(va.DATASET_V4, body)
            if errors:
                return 400, va.nest_400(va.flatten(errors))
            if not self._pid_ok(body):  # v4: PidValidationPipe runs before the permission check
                return _err(400, "PID is not following required standards")
        if not self.policy.can_create(c.principal, body.get("ownerGroup"), body.get("pid")):
            return _err(403, "Unauthorized to create this dataset" if v3 else "Unauthorized access")
        if v3 and not self._pid_ok(body):
            return _err(400, "PID is not following required standards")
        assert c.principal is not None
        return self._insert(body, c.version, c.principal.username)

    def _insert(self, body: JsonDict, version: str, user: str) -> Reply:
        pid = body.get("pid")
        if pid and self.rewrite_pid_prefix:
            pid = f"{self.rewrite_pid_prefix}{pid}"  # a deployment (or proxy) that prefixes pids
        if pid is None or self.drop_client_pids:
            pid = f"{self.pid_prefix}/{uuid.uuid4()}"
        required = {k: body.get(k) for k in ("owner", "datasetName")}
        missing = {k: v for k, v in {"pid": pid, **required}.items() if v is None or v == ""}
        if missing:  # mongoose schema validation fails before the insert is tried
            if version == "3":
                return 500, _mongoose_required(missing)
            return _err(500, "Something went wrong. Please try again later.", "")
        with self.store.lock:
            if pid in self.store.datasets:
                return _err(409, f"A dataset with pid {pid} already exists!")
            doc = st.build_dataset(body, version, user, pid, self.store.started)
            self.store.datasets[pid] = doc
            out = st.v3_output(doc, created=True) if version == "3" else st.v4_output(doc)
        return 201, out

    def dataset_is_valid(self, c: Call) -> Reply:
        if not self.policy.has_create_rule(c.principal):
            return FORBIDDEN_RESOURCE
        if c.version == "4":
            if not self._pid_ok(c.body):
                return _err(400, "PID is not following required standards")
            return 200, {"valid": not va.validate(va.DATASET_V4, va.transform_body(c.body))}
        dto, body = self._v3_prepare(c.body)
        errors = va.validate(dto, body)
        if not errors:
            return 200, {"valid": True}
        return 200, {"valid": False, "error": "; ".join(va.flatten(errors))}

    def _output(self, c: Call, doc: JsonDict, history: bool = False) -> JsonDict:
        return st.v3_output(doc, history=history) if c.version == "3" else st.v4_output(doc)

    def _filter(self, c: Call) -> JsonDict | Reply:
        raw = (c.query.get("filter") or ["{}"])[0]
        try:
            flt = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return _err(400, "Invalid filter")
        return flt if isinstance(flt, dict) else {}

    def _readable(self, c: Call) -> Reply | list[JsonDict]:
        flt = self._filter(c)
        if isinstance(flt, tuple):
            return flt
        with self.store.lock:
            docs = [d for d in self.store.datasets.values() if self.policy.can_read(c.principal, d)]
            return st.apply_filter(docs, flt)

    def _projected(self, c: Call, docs: list[JsonDict]) -> Reply:
        """The output documents reduced by the filter's ``fields`` (the backend's ``$project``)."""
        flt = self._filter(c)
        fields = flt.get("fields") if isinstance(flt, dict) else None
        try:
            return 200, [st.project(self._output(c, d), fields) for d in docs]
        except st.BadProjection as exc:
            return 400, str(exc)

    def list_datasets(self, c: Call) -> Reply:
        found = self._readable(c)
        return found if isinstance(found, tuple) else self._projected(c, found)

    def find_one(self, c: Call) -> Reply:
        found = self._readable(c)
        if isinstance(found, tuple):
            return found
        status, body = self._projected(c, found[:1])
        return (status, body[0] if body else None) if status == 200 else (status, body)

    def count(self, c: Call) -> Reply:
        found = self._readable(c)
        return found if isinstance(found, tuple) else (200, {"count": len(found)})

    def _dataset(self, c: Call, may: _Check) -> Reply | JsonDict:
        """``checkPermissionsForDatasetExtended``: 404 if absent, else 403 unless allowed."""
        doc = self.store.datasets.get(c.params[0])
        if doc is None:
            # v4 prints the looked-up document, which is null (observed "dataset: null not found")
            return _err(404, f"dataset: {c.params[0] if c.version == '3' else 'null'} not found")
        return doc if may(c.principal, doc) else UNAUTHORIZED_ACCESS

    def get_dataset(self, c: Call) -> Reply:
        with self.store.lock:
            doc = self._dataset(c, self.policy.can_read)
            return doc if isinstance(doc, tuple) else (200, self._output(c, doc, history=True))

    def patch_dataset(self, c: Call) -> Reply:
        with self.store.lock:
            doc = self.store.datasets.get(c.params[0])
            if doc is None:
                return _err(404, "Not Found", "")
            if not self.policy.can_update(c.principal, doc):
                return _err(403, "Unauthorized to update this dataset")
            base = va.select_v3_dto(doc) if c.version == "3" else va.DATASET_V4
            dto = tuple(va.Prop(p.name, p.checks, True, p.nested) for p in base if p.name != "pid")
            body = va.transform_body(c.body)
            errors = va.validate(dto, body)
            if errors:
                v3 = c.version == "3"
                return 400, (va.v3_400(errors) if v3 else va.nest_400(va.flatten(errors)))
            assert c.principal is not None
            patch = st.build_dataset(
                body, doc["version"], c.principal.username, doc["pid"], self.store.started
            )
            for key in c.body:  # only what the client sent, after v3->v4 renaming and casting
                name = _V3_NAMES.get(key, key)
                if name in patch and name not in ("pid", "_id", "classification", "version"):
                    doc[name] = patch[name]
            doc.update({"updatedBy": c.principal.username, "updatedAt": st.iso_now()})
            return 200, self._output(c, doc)

    def delete_dataset(self, c: Call) -> Reply:
        if not self.policy.can_delete(c.principal, {}):
            return FORBIDDEN_RESOURCE
        with self.store.lock:
            doc = self._dataset(c, self.policy.can_delete)
            if isinstance(doc, tuple):
                return doc
            # Only the dataset: the backend's DELETE does not cascade, so its origdatablocks stay
            # (keyed by datasetId) and a dataset created later under the same pid lists them again.
            del self.store.datasets[doc["pid"]]
            return 200, copy.deepcopy(doc)

    # -- origdatablocks ---------------------------------------------------------------------
    def _odb_allowed(self, c: Call, doc: JsonDict, with_update: bool) -> bool:
        ok = self.policy.can_odb_create(c.principal, doc)
        return ok and (not with_update or self.policy.can_update(c.principal, doc))

    def _attach(self, body: JsonDict, dataset: JsonDict, user: str) -> Reply:
        odb = st.build_origdatablock(body, dataset, user)
        self.store.origdatablocks.append(odb)
        if getattr(self.request_local, "crash_before_totals", False):
            # The backend updates the totals in a second write; a crash in between skips it.
            return 201, copy.deepcopy(odb)
        # updateDatasetSizeAndFiles: $inc, so duplicates count twice (observed)
        dataset["size"] = dataset.get("size", 0) + body["size"]
        dataset["numberOfFiles"] = dataset.get("numberOfFiles", 0) + len(body["dataFileList"])
        dataset["updatedAt"] = st.iso_now()
        return 201, copy.deepcopy(odb)

    def create_odb(self, c: Call) -> Reply:
        if not self.policy.has_create_rule(c.principal):
            return FORBIDDEN_RESOURCE
        errors = va.validate(va.ODB_CREATE, c.body)
        if errors:
            return 400, va.nest_400(va.flatten(errors))
        with self.store.lock:
            dataset = self.store.datasets.get(c.body["datasetId"])
            if dataset is None:
                msg = f"Dataset: {c.body['datasetId']} not found for attaching an origdatablock"
                return _err(404, msg)
            if not self._odb_allowed(c, dataset, with_update=c.version == "4"):
                return UNAUTHORIZED_ACCESS
            assert c.principal is not None
            return self._attach(c.body, dataset, c.principal.username)

    def odb_is_valid(self, c: Call) -> Reply:
        if not self.policy.has_create_rule(c.principal):
            return FORBIDDEN_RESOURCE
        pid = c.body.get("datasetId") if isinstance(c.body, dict) else None
        if c.version == "4" and isinstance(pid, str):
            # the v4 controller checks write access to the parent dataset first (observed 403)
            dataset = self.store.datasets.get(pid)
            if dataset is None:
                return _err(404, f"Dataset: {pid} not found for attaching an origdatablock")
            if not self._odb_allowed(c, dataset, with_update=True):
                return UNAUTHORIZED_ACCESS
        errors = va.validate(va.ODB_CREATE, c.body, with_target=True)
        return 200, {"valid": not errors, ("errors" if c.version == "3" else "reason"): errors}

    def create_scoped_odb(self, c: Call) -> Reply:
        if not self.policy.has_create_rule(c.principal):
            return FORBIDDEN_RESOURCE
        errors = va.validate(va.ODB_DATASET_SCOPED, c.body)
        if errors:
            return 400, va.nest_400(va.flatten(errors))
        with self.store.lock:
            dataset = self._dataset(c, lambda p, d: self.policy.can_odb_create(p, d))
            if isinstance(dataset, tuple):
                return dataset
            assert c.principal is not None
            return self._attach(c.body, dataset, c.principal.username)

    def scoped_odb_is_valid(self, c: Call) -> Reply:
        if not self.policy.has_create_rule(c.principal):
            return FORBIDDEN_RESOURCE
        with self.store.lock:
            dataset = self._dataset(c, lambda p, d: self.policy.can_odb_create(p, d))
        if isinstance(dataset, tuple):
            return dataset
        errors = va.validate(va.ODB_DATASET_SCOPED, c.body, with_target=True)
        return 200, {"valid": not errors, "errors": errors}

    def dataset_odbs(self, c: Call) -> Reply:
        with self.store.lock:
            dataset = self._dataset(c, self.policy.can_read)
            if isinstance(dataset, tuple):
                return dataset
            odbs = [o for o in self.store.origdatablocks if o.get("datasetId") == dataset["pid"]]
            return 200, [{"_id": o["_id"], **copy.deepcopy(o)} for o in odbs]

    # -- proposals / instruments (seeded by tests) --------------------------------------------
    def get_proposal(self, c: Call) -> Reply:
        """404 first (even anonymous), then 403 ``Unauthorized to this proposal`` (observed)."""
        with self.store.lock:
            doc = self.store.proposals.get(c.params[0])
            if doc is None:
                return _err(404, f"Proposal: {c.params[0]} not found")
            owner = doc.get("ownerGroup")
            readable = c.principal is not None and (owner is None or self.policy.can_read(c.principal, doc))
            return (200, copy.deepcopy(doc)) if readable else _err(403, "Unauthorized to this proposal")

    def list_instruments(self, c: Call) -> Reply:
        return self._filtered(c, self.store.instruments)

    def list_samples(self, c: Call) -> Reply:
        """Anyone may list; anonymous callers see published samples only (observed ``[]``)."""
        with self.store.lock:
            visible = [
                doc for doc in self.store.samples if c.principal is not None or doc.get("isPublished") is True
            ]
        return self._filtered(c, visible)

    def list_origdatablocks(self, c: Call) -> Reply:
        """``GET /api/v3/origdatablocks``: the blocks of datasets the caller may read."""
        with self.store.lock:
            readable = {pid for pid, d in self.store.datasets.items() if self.policy.can_read(c.principal, d)}
            blocks = [o for o in self.store.origdatablocks if o.get("datasetId") in readable]
        return self._filtered(c, blocks)

    def _filtered(self, c: Call, collection: list[JsonDict]) -> Reply:
        """``GET <collection>?filter={"where": ...}`` over a seeded list."""
        raw = (c.query.get("filter") or ["{}"])[0]
        try:
            flt = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return _err(400, "Invalid filter")
        with self.store.lock:
            return 200, copy.deepcopy(st.apply_filter(list(collection), flt if isinstance(flt, dict) else {}))


_V3_NAMES = {
    "proposalId": "proposalIds",
    "sampleId": "sampleIds",
    "instrumentId": "instrumentIds",
    "principalInvestigator": "principalInvestigators",
    "investigator": "principalInvestigators",
}


def _bearer(header: str | None) -> str | None:
    """passport-jwt ``fromAuthHeaderAsBearerToken``: only ``Bearer <token>`` counts."""
    parts = (header or "").split()
    return parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None

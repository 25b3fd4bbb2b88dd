"""In-memory SciCat state: accounts and tokens, datasets, origdatablocks, proposals, instruments.

Also the group-based permission rules of CONTRACT.md §6.2 (CASL abilities re-stated) and the
shaping of stored documents (defaults, UTC times, v3/v4 output). Every public method takes
the store's lock, so the threaded HTTP server may call it from any request thread.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .si import to_si

__all__ = [
    "Account",
    "Groups",
    "Principal",
    "Store",
    "iso_now",
    "object_id",
    "to_utc",
]

JsonDict = dict[str, Any]
ALL = "#all"  # the backend's "every authenticated user" group value


@dataclass
class Account:
    """A functional account as in ``functionalAccounts.json``; each role is also a group."""

    username: str
    password: str
    roles: Sequence[str] = ()
    global_access: bool = False  # adds group "globalaccess" (grants nothing on datasets)
    email: str | None = None  # default "<username>@test.local", as in the recordings

    @property
    def groups(self) -> list[str]:
        """``currentGroups`` as whoami reports them (globalaccess first, observed)."""
        return (["globalaccess"] if self.global_access else []) + list(self.roles)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    username: str
    email: str
    user_id: str
    groups: tuple[str, ...]


@dataclass
class Groups:
    """The group environment variables of §6.2 (``#all`` = every authenticated user)."""

    admin: Sequence[str] = ("admin", "ingestor")
    create: Sequence[str] = ("group1",)
    privileged: Sequence[str] = ()
    with_pid: Sequence[str] = ()
    delete: Sequence[str] = ("admin",)
    lifecycle: Sequence[str] = ()


def _member(p: Principal | None, names: Iterable[str]) -> bool:
    names = list(names)
    return p is not None and (ALL in names or bool(set(p.groups) & set(names)))


class Policy:
    """CASL abilities for datasets and origdatablocks, by group membership."""

    def __init__(self, groups: Groups) -> None:
        self.g = groups

    def admin(self, p: Principal | None) -> bool:
        return _member(p, self.g.admin)

    def _creator(self, p: Principal | None) -> bool:
        return _member(p, [*self.g.create, *self.g.with_pid, *self.g.privileged])

    def has_create_rule(self, p: Principal | None) -> bool:
        """The route guard: anonymous or no create rule at all -> 403 Forbidden resource."""
        return self.admin(p) or self._creator(p)

    def _owns(self, p: Principal | None, doc: JsonDict) -> bool:
        return p is not None and doc.get("ownerGroup") in p.groups

    def can_create(self, p: Principal | None, owner_group: Any, pid: Any) -> bool:
        """Instance check: privileged/admin any; with-pid own group; create own group, no pid."""
        if self.admin(p) or _member(p, self.g.privileged):
            return True
        own = p is not None and owner_group in p.groups
        if own and _member(p, self.g.with_pid):
            return True
        return own and not pid and _member(p, self.g.create)

    def can_read(self, p: Principal | None, doc: JsonDict) -> bool:
        if doc.get("isPublished") is True:
            return True
        if p is None:
            return False
        if self.admin(p) or _member(p, self.g.lifecycle):
            return True
        shared = set(doc.get("accessGroups") or []) | set(doc.get("sharedWith") or [])
        return self._owns(p, doc) or bool(shared & {*p.groups, p.email})

    def can_update(self, p: Principal | None, doc: JsonDict) -> bool:
        return self.admin(p) or (self._creator(p) and self._owns(p, doc))

    def can_odb_create(self, p: Principal | None, doc: JsonDict) -> bool:
        """Privileged groups create origdatablocks on any dataset (no extra read right)."""
        if self.admin(p) or _member(p, self.g.privileged):
            return True
        return self._creator(p) and self._owns(p, doc)

    def can_delete(self, p: Principal | None, doc: JsonDict) -> bool:
        return self.admin(p) or _member(p, self.g.delete)


_counter = [secrets.randbelow(1 << 24)]
_process_random = secrets.token_bytes(5)


def object_id() -> str:
    """A MongoDB ObjectId as 24 hex digits (time, process random, counter)."""
    _counter[0] = (_counter[0] + 1) % (1 << 24)
    raw = int(time.time()).to_bytes(4, "big") + _process_random + _counter[0].to_bytes(3, "big")
    return raw.hex()


def iso_now() -> str:
    """Now as JavaScript's ``Date.toISOString()`` prints it."""
    return _iso(datetime.now(UTC))


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


def to_utc(value: Any) -> Any:
    """Cast like mongoose ``Date``: offset-less times are server-local, which is UTC here."""
    m = _DATE_RE.match(value) if isinstance(value, str) else None
    if m is None:
        return value  # not a form JS Date parses the same way; keep it verbatim
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro, UTC)
    if tz and tz not in "Zz":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "").ljust(4, "0")
        dt -= sign * (
            datetime(1970, 1, 1, int(digits[:2]), int(digits[2:]), tzinfo=UTC)
            - datetime(1970, 1, 1, tzinfo=UTC)
        )
    return _iso(dt)


_ARRAYS = (
    "accessGroups",
    "keywords",
    "sharedWith",
    "techniques",
    "relationships",
    "principalInvestigators",
    "proposalIds",
    "sampleIds",
    "instrumentIds",
    "inputDatasets",
    "usedSoftware",
)
_V3_TO_V4 = {"proposalId": "proposalIds", "sampleId": "sampleIds", "instrumentId": "instrumentIds"}


def _lifecycle(started: datetime) -> JsonDict:
    """Schema default ``datasetlifecycle``; its dates come from server start (observed)."""
    midnight = started.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "archivable": True,
        "retrievable": False,
        "publishable": False,
        "dateOfDiskPurging": _iso(started),
        "publishedOn": _iso(started),
        "isOnCentralDisk": True,
        "archiveStatusMessage": "datasetCreated",
        "retrieveStatusMessage": "",
        "retrieveIntegrityCheck": False,
        "_id": object_id(),
        "archiveRetentionTime": _iso(midnight),
        "dateOfPublishing": _iso(midnight),
    }


def _metadata(value: Any) -> JsonDict:
    """The key-encoding transform runs before ``@IsObject``: ``"x"`` becomes ``{"0": "x"}``."""
    if isinstance(value, dict):
        return {k: _physical(v) for k, v in value.items()}
    if isinstance(value, str | list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _physical(v: Any) -> Any:
    """FormatPhysicalQuantitiesInterceptor: ``{value, unit}`` with a unit gains ``valueSI/unitSI``."""
    if isinstance(v, dict) and "value" in v and isinstance(v.get("unit"), str) and v["unit"]:
        value_si, unit_si = to_si(v["value"], v["unit"])
        return {**v, "valueSI": value_si, "unitSI": unit_si}
    return v


def build_dataset(body: JsonDict, version: str, user: str, pid: str, started: datetime) -> JsonDict:
    """The document ``datasetsService.create`` stores for a validated v3/v4 body."""
    src = dict(body)
    if version == "3" and src.get("type") == "raw":
        # The v3 -> v4 conversion wraps these unconditionally: absent -> [null] (observed).
        src.setdefault("sampleId", None)
        src.setdefault("instrumentId", None)
    for old, new in _V3_TO_V4.items():
        if old in src:
            src[new] = [src.pop(old)]
    for old in ("principalInvestigator", "investigator"):
        if old in src:
            src["principalInvestigators"] = [src.pop(old)]
    src.pop("version", None)
    now = iso_now()
    doc: JsonDict = {
        "_id": pid,
        "pid": pid,
        "createdBy": user,
        "updatedBy": user,
        "accessGroups": [],
        "isPublished": False,
        "size": 0,
        "packedSize": 0,
        "numberOfFiles": 0,
        "numberOfFilesArchived": 0,
        "keywords": [],
        "sharedWith": [],
        "techniques": [],
        "relationships": [],
        "scientificMetadata": {},
        "principalInvestigators": [],
        "proposalIds": [],
        "sampleIds": [],
        "instrumentIds": [],
        "inputDatasets": [],
        "usedSoftware": [],
    }
    for key, value in src.items():
        if key == "pid" or value is None:
            continue
        if key in _ARRAYS and not isinstance(value, list):
            value = [value]  # mongoose casts a scalar into a one-element array
        if key in ("creationTime", "startTime", "endTime"):
            value = to_utc(value)
        if key == "scientificMetadata":
            value = _metadata(value)
        if key in ("techniques", "relationships"):
            value = [{**v, "_id": object_id()} if isinstance(v, dict) else v for v in value]
        doc[key] = value
    doc["version"] = version
    doc["datasetlifecycle"] = {**_lifecycle(started), **(src.get("datasetlifecycle") or {})}
    # the pre-save hook overwrites classification whatever the client sent
    doc["classification"] = "IN=medium,AV=low,CO=low"
    doc.update({"createdAt": now, "updatedAt": now, "__v": 0})
    return doc


def v3_output(doc: JsonDict, *, history: bool = False, created: bool = False) -> JsonDict:
    """``OutputDatasetObsoleteDto``: the stored doc plus the v3 scalars (+ ``history`` on GET).

    A ``[null]`` array gives no scalar in the create answer (the in-memory document holds
    ``undefined``) but ``null`` once read back from the database (observed).
    """
    out = copy.deepcopy(doc)
    for scalar, array in (*_V3_TO_V4.items(), ("principalInvestigator", "principalInvestigators")):
        if out.get(array) and (not created or out[array][0] is not None):
            if scalar == "principalInvestigator" and out.get("type") == "derived":
                scalar = "investigator"
            out[scalar] = out[array][0]
    if history:
        out["history"] = []
    return out


def _buffer(oid: Any) -> Any:
    """``ClassSerializerInterceptor`` prints sub-document ObjectIds as Node Buffers."""
    if isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{24}", oid):
        return {"buffer": {"type": "Buffer", "data": list(bytes.fromhex(oid))}}
    return oid


def v4_output(doc: JsonDict) -> JsonDict:
    """``OutputDatasetDto`` as the v4 controller serialises it."""
    out = copy.deepcopy(doc)
    for item in out.get("techniques") or []:
        if isinstance(item, dict) and "_id" in item:
            item["_id"] = _buffer(item["_id"])
    if isinstance(out.get("datasetlifecycle"), dict) and "_id" in out["datasetlifecycle"]:
        out["datasetlifecycle"]["_id"] = _buffer(out["datasetlifecycle"]["_id"])
    return out


def build_origdatablock(body: JsonDict, dataset: JsonDict, user: str) -> JsonDict:
    """The stored origdatablock: ownership copied from the dataset, uuid ``_id``, UTC times."""
    odb_id = str(uuid.uuid4())
    now = iso_now()
    files = []
    for f in body["dataFileList"]:
        oid = object_id()
        files.append({**f, "time": to_utc(f.get("time")), "_id": oid, "id": oid})
    doc: JsonDict = {
        "_id": odb_id,
        "createdBy": user,
        "updatedBy": user,
        "ownerGroup": dataset.get("ownerGroup"),
        "accessGroups": list(dataset.get("accessGroups") or []),
        "isPublished": bool(body.get("isPublished", False)),
        "datasetId": dataset["pid"],
    }
    if dataset.get("instrumentGroup") is not None:
        doc["instrumentGroup"] = dataset["instrumentGroup"]
    doc.update({k: v for k, v in body.items() if k in ("size", "chkAlg")})
    doc.update({"dataFileList": files, "createdAt": now, "updatedAt": now, "__v": 0, "id": odb_id})
    return doc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Store:
    """All mutable state of one stand-in, guarded by ``lock``."""

    accounts: dict[str, Account]
    token_ttl_s: float = 3600.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    datasets: dict[str, JsonDict] = field(default_factory=dict)
    origdatablocks: list[JsonDict] = field(default_factory=list)
    proposals: dict[str, JsonDict] = field(default_factory=dict)
    instruments: list[JsonDict] = field(default_factory=list)
    samples: list[JsonDict] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    _secret: bytes = field(default_factory=lambda: os.urandom(32))
    _user_ids: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (user, exp)

    def user_doc(self, username: str) -> JsonDict:
        """The user document of an account (stable ``_id`` per stand-in)."""
        with self.lock:
            acc = self.accounts[username]
            uid = self._user_ids.setdefault(username, object_id())
        email = acc.email or f"{username}@test.local"
        return {
            "_id": uid,
            "username": username,
            "email": email,
            "authStrategy": "local",
            "__v": 0,
            "id": uid,
        }

    def check_password(self, username: Any, password: Any) -> bool:
        acc = self.accounts.get(username) if isinstance(username, str) else None
        return (
            acc is not None
            and isinstance(password, str)
            and hmac.compare_digest(acc.password.encode(), password.encode())
        )

    def issue_token(self, username: str) -> str:
        """An HS256 JWT whose payload is the user document + iat/exp (as the backend's)."""
        now = time.time()
        exp = now + self.token_ttl_s
        payload = {
            **self.user_doc(username),
            "iat": int(now),
            "exp": int(exp),
            "jti": secrets.token_hex(8),
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        token = f"{head}.{body}.{sig}"
        with self.lock:
            self._tokens[token] = (username, exp)
        return token

    def expire_tokens(self) -> None:
        with self.lock:
            self._tokens = {t: (u, 0.0) for t, (u, _) in self._tokens.items()}

    def principal(self, token: str | None) -> Principal | str | None:
        """The caller for a bearer token: Principal, None (anonymous) or "expired"."""
        with self.lock:
            entry = self._tokens.get(token) if token else None
        if entry is None:
            return None  # bad signature / unknown token: anonymous, like the backend
        username, exp = entry
        if time.time() >= exp:
            return "expired"
        doc = self.user_doc(username)
        acc = self.accounts[username]
        return Principal(username, doc["email"], doc["_id"], tuple(acc.groups))


class BadProjection(ValueError):
    """A ``fields`` value that is neither a list nor an object (the backend's 400)."""


def project(doc: JsonDict, fields: Any) -> JsonDict:
    """``doc`` reduced by a ``?filter=`` ``fields`` projection, as the backend's ``$project`` does.

    A list (or an object of true values) keeps the named fields (dotted paths too) and ``_id``;
    an object of false values drops them; an empty list or object (or none) keeps everything
    (observed on SciCatProject/backend @ 783086a, v3 and v4 alike). Anything else:
    :class:`BadProjection`.
    """
    if fields is None:
        return doc
    if isinstance(fields, list):
        spec = {str(name): True for name in fields}
    elif isinstance(fields, dict):
        spec = {str(name): bool(value) for name, value in fields.items()}
    else:
        raise BadProjection("Fields must be an array or a valid projection object")
    if not spec:
        return doc
    if not any(spec.values()):  # exclusion
        out = copy.deepcopy(doc)
        for name in spec:
            _drop(out, name.split("."))
        return out
    kept: JsonDict = {"_id": doc["_id"]} if "_id" in doc and spec.get("_id", True) else {}
    for name, keep in spec.items():
        if keep and name != "_id":
            _copy_path(doc, kept, name.split("."))
    return kept


def _copy_path(source: Any, target: JsonDict, parts: list[str]) -> None:
    if not isinstance(source, dict) or parts[0] not in source:
        return
    if len(parts) == 1:
        target[parts[0]] = copy.deepcopy(source[parts[0]])
        return
    inner = source[parts[0]]
    if isinstance(inner, dict):
        _copy_path(inner, target.setdefault(parts[0], {}), parts[1:])


def _drop(doc: Any, parts: list[str]) -> None:
    if not isinstance(doc, dict):
        return
    if len(parts) == 1:
        doc.pop(parts[0], None)
    else:
        _drop(doc.get(parts[0]), parts[1:])


def _field(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _regex(pattern: Any, flags: int = 0) -> re.Pattern[str]:
    if isinstance(pattern, str) and len(pattern) > 2 and pattern[0] == "/" and pattern.rfind("/") > 0:
        body, _, opts = pattern[1:].rpartition("/")  # "/x/i" as LoopBack accepts it
        return re.compile(body, flags | (re.I if "i" in opts else 0))
    return re.compile(str(pattern), flags)


def _values(value: Any) -> list[Any]:
    """Mongo compares an array field element-wise as well as whole."""
    return [value, *value] if isinstance(value, list) else [value]


def _cmp(value: Any, op: str, arg: Any) -> bool:
    try:
        return any(
            v is not None and {"gt": v > arg, "gte": v >= arg, "lt": v < arg, "lte": v <= arg}[op]
            for v in _values(value)
        )
    except TypeError:
        return False


def _op(value: Any, op: str, arg: Any, cond: JsonDict) -> bool:
    op = op.lstrip("$")
    if op in ("eq",):
        return arg in _values(value)
    if op in ("ne", "neq"):
        return arg not in _values(value)
    if op in ("in", "inq"):
        return any(a in _values(value) for a in arg or [])
    if op == "nin":
        return not any(a in _values(value) for a in arg or [])
    if op in ("gt", "gte", "lt", "lte"):
        return _cmp(value, op, arg)
    if op == "exists":
        return (value is not None) == bool(arg)
    if op in ("regex", "regexp", "like", "ilike", "nlike", "nilike"):
        flags = re.I if op in ("ilike", "nilike") or "i" in str(cond.get("$options", "")) else 0
        rx = _regex(arg, flags)
        hit = any(isinstance(v, str) and rx.search(v) for v in _values(value))
        return not hit if op.startswith("n") else hit
    return op == "options"  # $options only qualifies $regex


def matches(doc: JsonDict, where: Any) -> bool:
    """A LoopBack/Mongo ``where`` clause: equality, $and/$or, comparison, in, like/regex."""
    if not isinstance(where, dict):
        return True
    for key, cond in where.items():
        if key in ("and", "$and", "or", "$or", "nor", "$nor"):
            hits = [matches(doc, w) for w in (cond or [])]
            ok = all(hits) if "and" in key else any(hits) if "nor" not in key else not any(hits)
        elif isinstance(cond, dict) and cond and all(k.startswith("$") or k in _OPS for k in cond):
            ok = all(_op(_field(doc, key), op, arg, cond) for op, arg in cond.items())
        else:
            ok = cond in _values(_field(doc, key))
        if not ok:
            return False
    return True


_OPS = {
    "eq",
    "ne",
    "neq",
    "in",
    "inq",
    "nin",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "regexp",
    "like",
    "ilike",
    "nlike",
    "nilike",
}


def apply_filter(docs: list[JsonDict], flt: JsonDict) -> list[JsonDict]:
    """``where`` + ``limits``/top-level ``skip``/``limit``/``order`` of a ``?filter=`` value."""
    out = [d for d in docs if matches(d, flt.get("where"))]
    limits: JsonDict = flt["limits"] if isinstance(flt.get("limits"), dict) else flt
    order = limits.get("order")
    for spec in reversed(order if isinstance(order, list) else [order] if order else []):
        name, _, direction = str(spec).replace(" ", ":").partition(":")
        out.sort(
            key=lambda d: (_field(d, name) is None, str(_field(d, name))),
            reverse=direction.lower() == "desc",
        )
    skip = int(limits.get("skip") or 0)
    limit = limits.get("limit")
    return out[skip : skip + int(limit)] if limit else out[skip:]

"""SciCat DTO rules re-stated as data, with class-validator's constraint names and texts.

Each DTO is an ordered tuple of :class:`Prop`. Order matters because class-validator reports
the properties of the DTO's own class first and then those of its ancestors, root first
(CONTRACT.md §3), and within one property the decorators bottom-up; clients and the recorded
exchanges see that order. Error objects are plain dicts shaped like ``ValidationError``
serialised with ``validationError: {target: false, value: false}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DATAFILE",
    "DATASET_V4",
    "DERIVED_V3",
    "ODB_CREATE",
    "ODB_DATASET_SCOPED",
    "RAW_V3",
    "Prop",
    "flatten",
    "is_iso8601",
    "nest_400",
    "select_v3_dto",
    "transform_body",
    "v3_400",
    "validate",
]

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One class-validator constraint: its key, predicate and default message."""

    key: str
    ok: Callable[[Any], bool]
    message: str  # "$property" is replaced like class-validator does
    each: bool = False  # {each: true}: applied per element when the value is an array


@dataclass(frozen=True)
class Prop:
    """One whitelisted DTO property."""

    name: str
    checks: tuple[Check, ...] = ()
    optional: bool = False  # @IsOptional(): null/absent skips every other check
    nested: tuple[Prop, ...] | None = None  # @ValidateNested({each: true}) + @Type(...)


class _Missing:
    """An absent property: ``undefined`` in JavaScript, distinct from ``null``."""

    def __repr__(self) -> str:
        return "undefined"


MISSING: Any = _Missing()


def _js_str(value: Any) -> str:
    """``String(value)`` as JavaScript would print it inside a message."""
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join("" if v is None else _js_str(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# validator.js isISO8601 (strict: false), verbatim; \3 and \17 are back-references.
_ISO8601 = re.compile(
    r"^([\+-]?\d{4}(?!\d{2}\b))((-?)((0[1-9]|1[0-2])(\3([12]\d|0[1-9]|3[01]))?|W([0-4]\d|5[0-3])"
    r"(-?[1-7])?|(00[1-9]|0[1-9]\d|[12]\d{2}|3([0-5]\d|6[1-6])))([T\s]((([01]\d|2[0-3])((:?)[0-5]\d)?"
    r"|24:?00)([\.,]\d+(?!:))?)?(\17[0-5]\d([\.,]\d+)?)?([zZ]|([\+-])([01]\d|2[0-3]):?([0-5]\d)?)?)?)?$"
)


def is_iso8601(value: Any) -> bool:
    """``@IsDateString()``: a string accepted by validator.js ``isISO8601`` (non-strict)."""
    return isinstance(value, str) and _ISO8601.match(value) is not None


_LOCAL_PART = re.compile(
    "^[a-z\\d!#\\$%&'\\*\\+\\-/=\\?\\^_`{\\|}~\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]+$", re.I
)
_QUOTED_LOCAL = re.compile(r'^"(?:[^"\\]|\\.)*"$')
_TLD = re.compile("^([a-z\u00a1-\u00a8\u00aa-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]{2,}|xn[a-z0-9-]{2,})$", re.I)
_LABEL = re.compile("^[a-z\u00a1-\uffff0-9-]+$", re.I)
_FULLWIDTH = re.compile("[\uff01-\uff5e]")
_IPV4 = re.compile(r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$")


def _is_fqdn(host: str) -> bool:
    """validator.js ``isFQDN`` with its defaults (TLD required, no underscores)."""
    if not host or host.endswith(".") or len(host) > 253:
        return False
    parts = host.split(".")
    if len(parts) < 2 or not _TLD.match(parts[-1]) or " " in parts[-1]:
        return False
    return all(
        0 < len(p) <= 63
        and _LABEL.match(p) is not None
        and not _FULLWIDTH.search(p)
        and not p.startswith("-")
        and not p.endswith("-")
        for p in parts
    )


def is_email(value: Any) -> bool:
    """validator.js ``isEmail`` with its defaults (no display name, UTF-8 local part)."""
    if not isinstance(value, str) or "@" not in value or len(value) > 254:
        return False
    local, _, domain = value.rpartition("@")
    if not local or len(local) > 64 or not _is_fqdn(domain.lower()):
        return False
    if _QUOTED_LOCAL.match(local):
        return True
    return all(part and _LOCAL_PART.match(part) for part in local.split("."))


def is_email_list(value: Any) -> bool:
    """``CustomEmailList``: falsy is invalid, else ``;``-separated trimmed emails."""
    if not value or not isinstance(value, str):
        return False
    return all(is_email(part.strip()) for part in value.split(";"))


def is_url(value: Any) -> bool:
    """``@IsUrl({require_protocol: false, require_valid_protocol: false})``, host checks only."""
    if not isinstance(value, str) or not value or re.search(r"\s", value):
        return False
    rest = value.split("://", 1)[1] if "://" in value else value
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    if host.startswith("["):  # bracketed IPv6 literal
        return host.endswith("]") or "]:" in host
    host = re.sub(r":\d{1,5}$", "", host)
    return bool(_IPV4.match(host)) or _is_fqdn(host.lower())


def _is_int(v: Any) -> bool:
    """JS ``Number.isInteger`` on a JSON-decoded value (1.0 parses to an integer in JS)."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_STR_MSG = "$property must be a string"
IS_STRING = Check("isString", lambda v: isinstance(v, str), _STR_MSG)
EACH_STRING = Check("isString", lambda v: isinstance(v, str), _STR_MSG, each=True)
NOT_EMPTY = Check("isNotEmpty", lambda v: v not in (None, "", MISSING), "$property should not be empty")
IS_INT = Check("isInt", _is_int, "$property must be an integer number")
IS_NUMBER = Check(
    "isNumber", _is_number, "$property must be a number conforming to the specified constraints"
)
IS_BOOLEAN = Check("isBoolean", lambda v: isinstance(v, bool), "$property must be a boolean value")
IS_OBJECT = Check("isObject", lambda v: isinstance(v, dict), "$property must be an object")
IS_ARRAY = Check("isArray", lambda v: isinstance(v, list), "$property must be an array")
ARRAY_NOT_EMPTY = Check(
    "arrayNotEmpty", lambda v: isinstance(v, list) and len(v) > 0, "$property should not be empty"
)
IS_DATE = Check("isDateString", is_iso8601, "$property must be a valid ISO 8601 date string")
IS_EMAIL = Check("isEmail", is_email, "$property must be an email")
IS_URL = Check("isUrl", is_url, "$property must be a URL address")
EMAIL_LIST = Check(
    "customEmailList",
    is_email_list,
    "Expected an email or a list of semicolon separated emails, got $value",
)
TYPE_ENUM = Check(
    "isEnum",
    lambda v: v in ("raw", "derived"),
    "$property must be one of the following values: raw, derived",
)


def _p(name: str, *checks: Check, opt: bool = False, nested: tuple[Prop, ...] | None = None) -> Prop:
    return Prop(name, checks, opt, nested)


def _opt(names: Iterable[str], *checks: Check) -> tuple[Prop, ...]:
    return tuple(_p(n, *checks, opt=True) for n in names)


TECHNIQUE = (_p("pid", IS_STRING), _p("name", IS_STRING))
RELATIONSHIP = (_p("pid", IS_STRING), _p("relationship", IS_STRING))
OWNABLE = (
    _p("ownerGroup", NOT_EMPTY, IS_STRING),
    _p("accessGroups", EACH_STRING, opt=True),
    _p("instrumentGroup", IS_STRING, opt=True),
)


def _common(v4: bool) -> tuple[Prop, ...]:
    """Fields shared by UpdateDatasetObsoleteDto (v3) and UpdateDatasetDto (v4), in order."""
    return (
        _p("owner", IS_STRING, opt=v4),  # optional in the v4 DTO, required by the schema
        _p("ownerEmail", IS_EMAIL, opt=True),
        _p("orcidOfOwner", IS_STRING, opt=True),
        _p("contactEmail", EMAIL_LIST),
        _p("sourceFolder", NOT_EMPTY, IS_STRING),
        _p("sourceFolderHost", IS_URL, opt=True),
        *_opt(("size", "packedSize", "numberOfFiles", "numberOfFilesArchived"), IS_INT),
        _p("creationTime", IS_DATE),
        _p("validationStatus", IS_STRING, opt=True),
        _p("keywords", EACH_STRING, opt=True),
        _p("description", IS_STRING, opt=True),
        _p("datasetName", IS_STRING, opt=not v4),
        _p("classification", IS_STRING, opt=True),
        _p("license", IS_STRING, opt=True),
        _p("isPublished", IS_BOOLEAN, opt=True),
        _p("techniques", IS_ARRAY, opt=True, nested=TECHNIQUE),
        _p("sharedWith", EACH_STRING, opt=True),
        _p("relationships", IS_ARRAY, opt=True, nested=RELATIONSHIP),
        _p("datasetlifecycle", opt=True),
        _p("scientificMetadata", IS_OBJECT, opt=True),
        _p("scientificMetadataSchema", IS_STRING, opt=True),
        _p("scientificMetadataValid", IS_BOOLEAN, opt=True),
        _p("comment", IS_STRING, opt=True),
        _p("dataQualityMetrics", IS_NUMBER, opt=True),
    )


_V3_CREATE_HEAD = (
    _p("pid", IS_STRING, opt=True),
    _p("type", TYPE_ENUM),
    _p("version", IS_STRING, opt=True),
    _p("datasetName", IS_STRING),
)
_V3_TAIL = (_p("proposalId", IS_STRING, opt=True), _p("runNumber", IS_STRING, opt=True))

RAW_V3: tuple[Prop, ...] = (
    *_V3_CREATE_HEAD,
    *OWNABLE,
    *_common(v4=False),
    *_V3_TAIL,
    _p("principalInvestigator", IS_STRING),
    _p("startTime", IS_DATE, opt=True),
    _p("endTime", IS_DATE, opt=True),
    _p("creationLocation", IS_STRING),
    *_opt(("dataFormat", "sampleId", "instrumentId"), IS_STRING),
    *_opt(("investigator", "inputDatasets", "usedSoftware", "jobParameters", "jobLogData")),
)

DERIVED_V3: tuple[Prop, ...] = (
    *_V3_CREATE_HEAD,
    *OWNABLE,
    *_common(v4=False),
    *_V3_TAIL,
    _p("investigator", IS_STRING),
    _p("inputDatasets", EACH_STRING),
    _p("usedSoftware", EACH_STRING),
    _p("jobParameters", IS_OBJECT, opt=True),
    _p("jobLogData", opt=True),
)

DATASET_V4: tuple[Prop, ...] = (
    _p("pid", IS_STRING, opt=True),
    _p("type", IS_STRING),
    *OWNABLE,
    *_common(v4=True),
    _p("principalInvestigators", EACH_STRING, opt=True),
    _p("startTime", IS_DATE, opt=True),
    _p("endTime", IS_DATE, opt=True),
    *_opt(("creationLocation", "dataFormat"), IS_STRING),
    *_opt(("proposalIds", "sampleIds", "instrumentIds", "inputDatasets", "usedSoftware"), EACH_STRING),
    _p("jobParameters", IS_OBJECT, opt=True),
    *_opt(("jobLogData", "runNumber"), IS_STRING),
)

DATAFILE: tuple[Prop, ...] = (
    _p("path", IS_STRING),
    _p("size", IS_NUMBER),
    _p("time", IS_DATE),
    *_opt(("chk", "uid", "gid", "perm", "type"), IS_STRING),
    _p("metadata", IS_OBJECT, opt=True),
)

_ODB_BODY = (
    _p("size", IS_INT),
    _p("chkAlg", NOT_EMPTY, IS_STRING, opt=True),
    _p("dataFileList", ARRAY_NOT_EMPTY, IS_ARRAY, nested=DATAFILE),
    _p("isPublished", IS_BOOLEAN, opt=True),
)
# The Update DTO re-declares ownerGroup with @IsOptional(), which makes the inherited rule optional.
ODB_CREATE: tuple[Prop, ...] = (
    _p("datasetId", IS_STRING),
    _p("ownerGroup", NOT_EMPTY, IS_STRING, opt=True),
    *OWNABLE[1:],
    *_ODB_BODY,
)
ODB_DATASET_SCOPED: tuple[Prop, ...] = _ODB_BODY


def transform_body(body: Any) -> Any:
    """Transforms that run before validation: ``scientificMetadata`` key encoding.

    ``encodeScientificMetadataKeys`` walks ``Object.entries(value)``, so a string ``"x"``
    becomes ``{"0": "x"}`` and passes ``@IsObject()`` (observed); numbers become ``{}``.
    """
    if not isinstance(body, dict) or body.get("scientificMetadata") is None:
        return body
    value = body["scientificMetadata"]
    if isinstance(value, dict):
        return body
    entries = {str(i): v for i, v in enumerate(value)} if isinstance(value, str | list) else {}
    return {**body, "scientificMetadata": entries}


def select_v3_dto(body: JsonDict) -> tuple[Prop, ...]:
    """``validateDatasetObsolete``: raw / derived DTO by ``type``, anything else the v4 one."""
    kind = body.get("type")
    return RAW_V3 if kind == "raw" else DERIVED_V3 if kind == "derived" else DATASET_V4


def _message(check: Check, prop: str, value: Any) -> str:
    text = check.message.replace("$property", prop).replace("$value", _js_str(value))
    return "each value in " + text if check.each else text


def _error(prop: str, target: Any | None, value: Any = MISSING) -> JsonDict:
    """A ValidationError; isValid (``target`` given) also shows the ``value`` (observed)."""
    err: JsonDict = {} if target is None else {"target": target}
    if target is not None and value is not MISSING:
        err["value"] = value
    err.update({"property": prop, "children": [], "constraints": {}})
    return err


def _nested_error(parent: str, index: str, target: Any | None) -> JsonDict:
    err = _error(index, target)
    err["constraints"]["nestedValidation"] = (
        f"each value in nested property {parent} must be either object or array"
    )
    return err


def _validate_props(dto: tuple[Prop, ...], obj: JsonDict, with_target: bool) -> list[JsonDict]:
    """class-validator ``execute``: whitelist errors first, then property errors in DTO order."""
    target = obj if with_target else None
    errors: list[JsonDict] = []
    known = {p.name for p in dto}
    for key in obj:
        if key not in known:
            err: JsonDict = {} if target is None else {"target": target, "value": obj[key]}
            err.update(
                {
                    "property": key,
                    "constraints": {"whitelistValidation": f"property {key} should not exist"},
                }
            )
            errors.append(err)
    seen: set[str] = set()
    for prop in dto:
        if prop.name in seen:  # a re-declared property is validated once
            continue
        seen.add(prop.name)
        value = obj.get(prop.name, MISSING)
        if prop.optional and value in (None, MISSING):
            continue
        err = _error(prop.name, target, value)
        for check in prop.checks:
            ok = (
                all(check.ok(v) for v in value) if check.each and isinstance(value, list) else check.ok(value)
            )
            if not ok:
                err["constraints"][check.key] = _message(check, prop.name, value)
        if prop.nested is not None and value not in (None, MISSING):
            _validate_nested(prop, value, err, with_target)
        errors.append(err)
    return _strip_empty(errors)


def _validate_nested(prop: Prop, value: Any, err: JsonDict, with_target: bool) -> None:
    assert prop.nested is not None
    if isinstance(value, list):
        for index, item in enumerate(value):
            child = _error(str(index), value if with_target else None, item)
            if isinstance(item, dict):
                child["children"] = _validate_props(prop.nested, item, with_target)
            else:
                child = _nested_error(prop.name, str(index), value if with_target else None)
            err["children"].append(child)
    elif isinstance(value, dict):
        err["children"].extend(_validate_props(prop.nested, value, with_target))
    else:
        err["constraints"]["nestedValidation"] = (
            f"each value in nested property {prop.name} must be either object or array"
        )


def _strip_empty(errors: list[JsonDict]) -> list[JsonDict]:
    """class-validator ``stripEmptyErrors``: drop clean entries, drop ``constraints: {}``."""
    kept: list[JsonDict] = []
    for err in errors:
        if "children" in err:
            err["children"] = _strip_empty(err["children"])
        if not err["constraints"]:
            if not err.get("children"):
                continue
            del err["constraints"]
        kept.append(err)
    return kept


def validate(dto: tuple[Prop, ...], body: Any, *, with_target: bool = False) -> list[JsonDict]:
    """Validate a decoded JSON body; returns ``ValidationError[]`` as plain dicts ([] = valid)."""
    if not isinstance(body, dict):
        # forbidUnknownValues: anything but an object is "an unknown value"
        return [
            {
                "children": [],
                "constraints": {"unknownValue": "an unknown value was passed to the validate function"},
            }
        ]
    return _validate_props(dto, body, with_target)


def flatten(errors: list[JsonDict]) -> list[str]:
    """Nest ``ValidationPipe.flattenValidationErrors``, quirks included.

    ``mapChildrenToValidationErrors`` replaces an error that has children by its children
    (so the parent's own constraints are dropped), deeper errors first, each message
    prefixed with the parent path (``dataFileList.0.size must be ...``).
    """
    out: list[str] = []
    for err in errors:
        for mapped in _map_children(err, ""):
            out.extend(mapped.get("constraints", {}).values())
    return out


def _map_children(err: JsonDict, parent: str) -> list[JsonDict]:
    children = err.get("children") or []
    if not children:
        return [err]
    path = f"{parent}.{err['property']}" if parent else str(err["property"])
    mapped: list[JsonDict] = []
    for item in children:
        if item.get("children"):
            mapped.extend(_map_children(item, path))
        constraints = {k: f"{path}.{v}" for k, v in item.get("constraints", {}).items()}
        mapped.append({**item, "constraints": constraints})
    return mapped


def _without_target(errors: list[JsonDict]) -> list[JsonDict]:
    out: list[JsonDict] = []
    for err in errors:
        copy = {k: v for k, v in err.items() if k != "target"}
        if copy.get("children"):
            copy["children"] = _without_target(copy["children"])
        out.append(copy)
    return out


def v3_400(errors: list[JsonDict]) -> JsonDict:
    """The v3 dataset body: ``message`` is ``JSON.stringify(errors)``, not a list."""
    text = json.dumps(_without_target(errors), separators=(",", ":"), ensure_ascii=False)
    return {"status": 400, "message": text}


def nest_400(messages: list[str] | str) -> JsonDict:
    """Nest's standard ``BadRequestException`` body."""
    return {"message": messages, "error": "Bad Request", "statusCode": 400}

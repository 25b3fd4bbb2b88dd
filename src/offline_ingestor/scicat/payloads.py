"""Dataset and origdatablock payloads for SciCat's v3 and v4 APIs.

Schema files may name fields the v3 way (``principalInvestigator``, ``proposalId``, ...) or
the v4 way (``principalInvestigators``, ``proposalIds``, ...); the payload is converted to
whichever API the config selects, and a field the API does not know is an error here, not a
400 from SciCat after half the work is done.
"""

from __future__ import annotations

from typing import Any

from ..errors import SchemaError

__all__ = ["DATASET_FIELDS_V3", "DATASET_FIELDS_V4", "V4_NAMES", "for_api", "missing_required"]

_COMMON = {
    "pid",
    "type",
    "ownerGroup",
    "accessGroups",
    "instrumentGroup",
    "owner",
    "ownerEmail",
    "orcidOfOwner",
    "contactEmail",
    "sourceFolder",
    "sourceFolderHost",
    "size",
    "packedSize",
    "numberOfFiles",
    "numberOfFilesArchived",
    "creationTime",
    "validationStatus",
    "keywords",
    "description",
    "datasetName",
    "classification",
    "license",
    "isPublished",
    "techniques",
    "sharedWith",
    "relationships",
    "datasetlifecycle",
    "scientificMetadata",
    "scientificMetadataSchema",
    "comment",
    "dataQualityMetrics",
    "runNumber",
    "startTime",
    "endTime",
    "creationLocation",
    "dataFormat",
    "inputDatasets",
    "usedSoftware",
    "jobParameters",
    "jobLogData",
}
DATASET_FIELDS_V3 = _COMMON | {
    "version",
    "principalInvestigator",
    "proposalId",
    "sampleId",
    "instrumentId",
    "investigator",
}
DATASET_FIELDS_V4 = _COMMON | {"principalInvestigators", "proposalIds", "sampleIds", "instrumentIds"}

#: v3 scalar name -> v4 list name (the one list of them).
V4_NAMES = {
    "principalInvestigator": "principalInvestigators",
    "proposalId": "proposalIds",
    "sampleId": "sampleIds",
    "instrumentId": "instrumentIds",
}
_REQUIRED = {
    "v3": (
        "ownerGroup",
        "owner",
        "contactEmail",
        "sourceFolder",
        "creationTime",
        "principalInvestigator",
        "creationLocation",
    ),
    "v4": ("ownerGroup", "owner", "contactEmail", "sourceFolder", "creationTime", "datasetName"),
}


def _to_v4(dataset: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dataset.items():
        if key in V4_NAMES:
            out[V4_NAMES[key]] = value if isinstance(value, list) else [value]
        elif key != "version":
            out[key] = value
    if "datasetName" not in out and out.get("sourceFolder"):
        # v3 fills this server-side; v4 requires it (CONTRACT §2.3).
        parts = [part for part in str(out["sourceFolder"]).split("/") if part]
        out["datasetName"] = "/".join(parts[-2:])
    return out


def _to_v3(dataset: dict[str, Any]) -> dict[str, Any]:
    back = {plural: singular for singular, plural in V4_NAMES.items()}
    out: dict[str, Any] = {}
    for key, value in dataset.items():
        if key in back:
            values = value if isinstance(value, list) else [value]
            if len(values) > 1:
                raise SchemaError(
                    f"field {key} has {len(values)} values; SciCat v3 takes one "
                    f"({back[key]}); set scicat.api_version: v4"
                )
            if values:
                out[back[key]] = values[0]
        else:
            out[key] = value
    return out


def for_api(dataset: dict[str, Any], api_version: str) -> dict[str, Any]:
    """The dataset converted to ``api_version``; unknown fields raise SchemaError."""
    converted = _to_v4(dataset) if api_version == "v4" else _to_v3(dataset)
    allowed = DATASET_FIELDS_V4 if api_version == "v4" else DATASET_FIELDS_V3
    unknown = sorted(set(converted) - allowed)
    if unknown:
        raise SchemaError(
            f"dataset field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"unknown to SciCat {api_version} (check machine_name in the schema)"
        )
    return converted


def missing_required(dataset: dict[str, Any], api_version: str) -> list[str]:
    """Required fields SciCat would reject the dataset for lacking (or empty)."""
    return [key for key in _REQUIRED[api_version] if dataset.get(key) in (None, "")]

"""The schema file format (``*.imsc.yml``) as validated models.

Field names and meanings are those of the ESS ingestor, so its schema files load unchanged.
Unknown keys, sources, operators and value types are errors here, at load time, instead of
silent no-ops at ingestion time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .operators import OPERATORS, canonical_operator
from .value_types import VALUE_TYPES

__all__ = [
    "FIELD_TYPES",
    "OPERATORS",
    "VALUE_TYPES",
    "MetadataItem",
    "NexusVariable",
    "SampleAttachment",
    "Schema",
    "ScicatJob",
    "ScicatVariable",
    "ValueVariable",
    "Variable",
    "canonical_operator",
]

FieldType = Literal["high_level", "scientific_metadata"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)


def _known_value_type(value: str) -> str:
    if value not in VALUE_TYPES:
        raise ValueError(f"unknown value type {value!r}; known: {', '.join(VALUE_TYPES)}")
    return value


#: A value type name, checked against the converters (``value_types.py``).
ValueType = Annotated[str, AfterValidator(_known_value_type)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _VariableBase(_Strict):
    value_type: ValueType = "string"
    #: Upstream's fallback schema writes ``unit: ''`` on every variable.
    unit: str = ""


class NexusVariable(_VariableBase):
    """Read from the NeXus file; ``*`` in ``path`` matches within one component."""

    source: Literal["NXS"]
    path: str


class ScicatVariable(_VariableBase):
    """GET ``url`` (relative to the API root) from SciCat and take ``field`` of the answer."""

    source: Literal["SC"]
    url: str
    field: str = ""


class ValueVariable(_VariableBase):
    """A ``<var>`` template, optionally passed through one operator."""

    source: Literal["VALUE"]
    value: Any
    operator: str = ""
    field: str | int | None = None
    pattern: str | None = None
    replacement: str | None = None

    @field_validator("operator")
    @classmethod
    def _known_operator(cls, value: str) -> str:
        if value and canonical_operator(value) not in OPERATORS:
            raise ValueError(f"unknown operator {value!r}; known: {', '.join(OPERATORS)}")
        return canonical_operator(value) if value else ""

    @model_validator(mode="after")
    def _operator_arguments(self) -> ValueVariable:
        if self.operator == "getitem" and self.field is None:
            raise ValueError("operator getitem needs 'field'")
        if self.operator == "str-replace" and (self.pattern is None or self.replacement is None):
            raise ValueError("operator str-replace needs 'pattern' and 'replacement'")
        return self


Variable = Annotated[NexusVariable | ScicatVariable | ValueVariable, Field(discriminator="source")]


class MetadataItem(_Strict):
    """One entry of the dataset: a top-level field or a scientific-metadata item."""

    field_type: FieldType
    machine_name: str
    value: Any
    type: ValueType = "string"
    human_name: str = ""
    unit: str = ""


class SampleAttachment(_Strict):
    """Look the sample up in SciCat by name and proposal, and add its id to ``sampleId``."""

    query_sample_name: bool = False
    sample_name_path: str = "/entry/sample/name"
    proposal_id_path: str = "/entry/experiment_identifier"
    #: Ours (ADR-003): a name SciCat does not know is created, once, under a derived id.
    create_missing: bool = False
    #: The new sample's groups (templates over the schema's variables); default: the dataset's.
    owner_group: str = ""
    access_groups: list[str] | str = Field(default_factory=list)
    #: Further fields of the new sample (templates): ``sampleCharacteristics``, ``type``, ...
    fields: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _creating_needs_query(self) -> SampleAttachment:
        if self.create_missing and not self.query_sample_name:
            raise ValueError("create_missing needs query_sample_name: true (the name is what is created)")
        reserved = {"sampleId", "sampleName", "description", "proposalId", "ownerGroup", "accessGroups"}
        if clash := sorted(reserved & set(self.fields)):
            raise ValueError(f"fields: {clash[0]} is set by the ingestor, not by fields")
        return self


class ScicatJob(_Strict):
    """``scicat_job`` (ADR-004): create one SciCat job per file after its dataset is complete."""

    #: A job type of the backend's job configuration (``JOB_CONFIGURATION_FILE``).
    type: str = Field(min_length=1)
    #: Templates over the schema's variables; ``<dataset_pid>`` is the dataset's pid.
    job_params: dict[str, Any] = Field(default_factory=dict)
    #: The job's owner group (a template); default: the dataset's ``ownerGroup``.
    owner_group: str = ""
    #: v4 ``contactEmail`` / v3 ``emailJobInitiator`` (a template); default: SciCat's (the account's).
    contact_email: str = ""

    @field_validator("job_params")
    @classmethod
    def _no_reserved_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in ("offlineIngestorKey", "datasetList"):
            if name in value:
                raise ValueError(f"{name} is set by the ingestor, not by job_params")
        return value


class Schema(_Strict):
    """One ``*.imsc.yml`` file."""

    id: str
    name: str
    instrument: str = ""
    selector: str | dict[str, Any]
    order: int = 0
    variables: dict[str, Variable] = Field(default_factory=dict)
    schema_: dict[str, MetadataItem] = Field(alias="schema")
    sample_attachment: SampleAttachment | None = None
    #: Upstream PR #243 adds a ``jobs`` section; accepted and not acted on.
    jobs: dict[str, Any] | None = None
    #: Ours (ADR-004): the SciCat job ``post-job`` creates for each file; none without it.
    scicat_job: ScicatJob | None = None
    #: Where it was loaded from (set by the loader, not read from the file).
    source_file: str = ""

    @field_validator("id")
    @classmethod
    def _non_empty_id(cls, value: str) -> str:
        if not str(value).strip():
            raise ValueError("schema id must not be empty")
        return value

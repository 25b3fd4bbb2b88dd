"""Load, validate and order the schema files of a directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import NoMatchingSchema, SchemaError
from .locate import line_of
from .models import Schema
from .selector import check_selector, matches
from .templates import references
from .variables import BUILTIN_NAMES

__all__ = ["SCHEMA_SUFFIXES", "BrokenSchema", "SchemaSet", "load_schema_file", "load_schemas"]

SCHEMA_SUFFIXES = (".imsc.yml", ".imsc.yaml")


@dataclass(frozen=True)
class BrokenSchema:
    """A schema file that failed validation; it still claims the files its selector matches."""

    file: str
    message: str
    order: int | None = None
    selector: Any = None


def _format(path: Path, text: str, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = [part for part in first["loc"] if part not in ("NXS", "SC", "VALUE")]
    loc = ["schema" if part == "schema_" else part for part in loc]
    key = ".".join(str(part) for part in loc) or "<top level>"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    message = message.removeprefix("Value error, ")
    if first["type"] == "literal_error" and "input" in first:
        message = f"{message} (got {first['input']!r})"
    line = line_of(text, loc)
    more = len(error.errors()) - 1
    tail = f" (and {more} more)" if more else ""
    return f"{path}:{line or 1}: {key}: {message}{tail}"


def _check_references(schema: Schema, path: Path, text: str) -> None:
    """Every ``<name>`` must be a built-in or a variable defined above its use."""
    known = set(BUILTIN_NAMES)
    for name, variable in schema.variables.items():
        template = getattr(variable, "value", None) if variable.source == "VALUE" else None
        template = getattr(variable, "url", template)
        for ref in sorted(references(template) - known):
            where = (
                "is itself"
                if ref == name
                else ("is defined later" if ref in schema.variables else "is not defined")
            )
            line = line_of(text, ["variables", name])
            raise SchemaError(f"{path}:{line or 1}: variables.{name}: uses <{ref}>, which {where}")
        known.add(name)
    for key, item in schema.schema_.items():
        for ref in sorted(references(item.value) - known):
            line = line_of(text, ["schema", key, "value"])
            raise SchemaError(f"{path}:{line or 1}: schema.{key}.value: <{ref}> is not a variable")
    _check_section_references(schema, path, text, known)


def _check_section_references(schema: Schema, path: Path, text: str, known: set[str]) -> None:
    """``scicat_job`` and ``sample_attachment`` templates name variables (and ``dataset_pid``)."""
    sections: list[tuple[list[str], Any]] = []
    if schema.scicat_job is not None:
        job = schema.scicat_job
        sections += [(["scicat_job", "job_params", name], value) for name, value in job.job_params.items()]
        sections += [(["scicat_job", "owner_group"], job.owner_group)]
        sections += [(["scicat_job", "contact_email"], job.contact_email)]
    if schema.sample_attachment is not None:
        sample = schema.sample_attachment
        sections += [(["sample_attachment", name], value) for name, value in sample.fields.items()]
        sections += [(["sample_attachment", "owner_group"], sample.owner_group)]
        sections += [(["sample_attachment", "access_groups"], sample.access_groups)]
    for where, template in sections:
        allowed = known | ({"dataset_pid"} if where[0] == "scicat_job" else set())
        for ref in sorted(references(template) - allowed):
            line = line_of(text, where) or line_of(text, where[:1])
            raise SchemaError(f"{path}:{line or 1}: {'.'.join(where)}: <{ref}> is not a variable")


def _refuse_aliases(text: str, loader: Any) -> None:
    """Refuse YAML anchors/aliases before building anything.

    An alias is expanded by reference, so a "billion laughs" file of a few hundred bytes
    becomes a graph whose walk (reference checking, validation) never ends. Schema files
    have no need for them (upstream's and ours use none).
    """
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            raise SchemaError(
                f"{{path}}:{line}: YAML aliases (*{event.anchor}) are not allowed in schema files"
            )


def _parse_yaml(text: str) -> Any:
    """Parse with libyaml's safe loader, falling back to the pure-Python one on errors.

    libyaml is about 5x faster (~30 ms of every CLI start and worker Runtime with the shipped
    schemas, bench/RESULTS.md); a broken file is parsed again in Python so that its message
    and line number stay exactly the ones users and tests know. Aliases are refused first.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _refuse_aliases(text, loader)
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError:
        _refuse_aliases(text, yaml.SafeLoader)
        return yaml.safe_load(text)


def load_schema_file(path: Path) -> Schema:
    """Parse and validate one schema file; SchemaError names the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read: {exc}") from None
    try:
        data = _parse_yaml(text)
    except SchemaError as exc:
        raise SchemaError(exc.message.replace("{path}", str(path))) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise SchemaError(f"{path}:{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}:1: a schema file must be a mapping")
    try:
        schema = Schema.model_validate({**data, "source_file": str(path)})
    except ValidationError as exc:
        raise SchemaError(_format(path, text, exc)) from None
    try:
        check_selector(schema.selector)
    except ValueError as exc:
        raise SchemaError(f"{path}:{line_of(text, ['selector']) or 1}: selector: {exc}") from None
    _check_references(schema, path, text)
    return schema


def _salvage(path: Path, message: str) -> BrokenSchema:
    """Keep order and selector of a broken file when they are readable."""
    try:
        data = _parse_yaml(path.read_text(encoding="utf-8"))  # aliases refused here too
        check_selector(data["selector"])
        return BrokenSchema(str(path), message, int(data.get("order", 0)), data["selector"])
    except Exception:
        return BrokenSchema(str(path), message)


@dataclass
class SchemaSet:
    """Valid schemas in selection order, the broken ones, and the fallback."""

    schemas: list[Schema] = field(default_factory=list)
    broken: list[BrokenSchema] = field(default_factory=list)
    fallback: Schema | None = None

    def by_id(self, schema_id: str) -> Schema:
        for schema in [*self.schemas, *([self.fallback] if self.fallback else [])]:
            if schema.id == schema_id:
                return schema
        raise SchemaError(f"schema {schema_id!r} is not loaded (was it removed or renamed?)")

    def select(self, filename: str) -> Schema:
        """First schema (by ``order``, then name) whose selector matches; else the fallback."""
        candidates: list[tuple[int, int, Schema | BrokenSchema]] = [
            (schema.order, 0, schema) for schema in self.schemas
        ]
        candidates += [(broken.order, 1, broken) for broken in self.broken if broken.order is not None]
        for _, _, candidate in sorted(candidates, key=lambda item: (item[0], item[1])):
            if matches(candidate.selector, filename):
                if isinstance(candidate, BrokenSchema):
                    raise SchemaError(
                        f"the schema for this file is broken: {candidate.message}", file=filename
                    )
                return candidate
        if self.fallback is not None:
            return self.fallback
        unreadable = [broken.message for broken in self.broken if broken.order is None]
        hint = (
            f"; {len(unreadable)} schema file(s) could not be read: {' | '.join(unreadable)}"
            if unreadable
            else ""
        )
        raise NoMatchingSchema(
            f"no schema selects this file ({len(self.schemas)} loaded) and no fallback is set{hint}",
            file=filename,
        )


def load_schemas(directory: Path, fallback: Path | None = None) -> SchemaSet:
    """Load every ``*.imsc.yml``/``*.imsc.yaml`` in ``directory``; bad files are kept aside."""
    if not directory.is_dir():
        raise SchemaError(f"schemas directory not found: {directory}")
    result = SchemaSet()
    seen: dict[str, str] = {}
    files = sorted(
        path
        for path in directory.iterdir()
        if path.name.endswith(SCHEMA_SUFFIXES) and not path.name.startswith(".")
    )
    for path in files:
        try:
            schema = load_schema_file(path)
        except SchemaError as exc:
            result.broken.append(_salvage(path, exc.message))
            continue
        if schema.id in seen:
            message = f"{path}:1: id: duplicate schema id {schema.id!r} (also in {seen[schema.id]})"
            result.broken.append(BrokenSchema(str(path), message, schema.order, schema.selector))
            continue
        seen[schema.id] = str(path)
        result.schemas.append(schema)
    result.schemas.sort(key=lambda schema: (schema.order, schema.name.casefold()))
    if fallback is not None:
        result.fallback = load_schema_file(fallback)
    return result

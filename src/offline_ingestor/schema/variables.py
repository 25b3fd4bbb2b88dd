"""Compute a schema's variables for one file: built-ins, then NXS, SC and VALUE in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import IngestError, ScicatAuthError, ScicatRejected, TransientError, VariableError
from ..files.nexus import read_path
from .models import NexusVariable, Schema, ScicatVariable, ValueVariable
from .operators import apply_operator
from .templates import Resolved, UnresolvedVariable, render
from .value_types import convert

__all__ = ["BUILTIN_NAMES", "Lookup", "builtin_variables", "extract_variables", "now_iso"]

#: Variables every schema may use without defining them (the ESS ingestor's built-ins).
BUILTIN_NAMES = (
    "ingestor_run_id",
    "data_file_path",
    "data_file_name",
    "now",
    "ingestor_files_directory",
    "ingestor_metadata_schema_id",
)

#: GET a path under the SciCat API root and return the decoded JSON.
Lookup = Callable[[str], Any]


def now_iso() -> str:
    """The ``<now>`` built-in: UTC time, ISO 8601 with offset (upstream's format)."""
    return dt.datetime.now(tz=dt.UTC).isoformat()


def builtin_variables(
    *, data_file: Path, schema_id: str, run_id: str, now: str, ingestor_files_directory: str
) -> dict[str, Resolved]:
    """The variables every schema can use without defining them (upstream's set)."""
    return {
        "ingestor_run_id": Resolved(run_id),
        "data_file_path": Resolved(data_file.as_posix()),
        "data_file_name": Resolved(data_file.name),
        "now": Resolved(now),
        "ingestor_files_directory": Resolved(ingestor_files_directory),
        "ingestor_metadata_schema_id": Resolved(schema_id),
    }


def _nexus(variable: NexusVariable, handle: Any) -> Resolved:
    found = read_path(handle, variable.path)
    value = [item.value for item in found] if len(found) > 1 else found[0].value
    if variable.value_type.endswith("[]") and not isinstance(value, list):
        value = [value]
    unit = found[0].unit if len(found) == 1 else ""
    return Resolved(value, unit or variable.unit)


def _scicat(variable: ScicatVariable, registry: dict[str, Resolved], lookup: Lookup | None) -> Resolved:
    url = str(render(variable.url, registry).value)
    if lookup is None:
        raise VariableError(f"needs SciCat (GET {url}) but no SciCat client is configured")
    try:
        answer = lookup(url)
    except ScicatRejected as exc:
        if exc.status in (401, 403):
            raise  # credentials or rights: not this variable's fault
        raise VariableError(f"GET {url}: SciCat answered {exc.status}: {exc.detail}") from None
    if not variable.field:
        return Resolved(answer, variable.unit)
    if not isinstance(answer, dict) or variable.field not in answer:
        kind = type(answer).__name__
        raise VariableError(f"GET {url}: answer ({kind}) has no field {variable.field!r}")
    return Resolved(answer[variable.field], variable.unit)


def _value(variable: ValueVariable, registry: dict[str, Resolved]) -> Resolved:
    rendered = render(variable.value, registry)
    if not variable.operator:
        return Resolved(rendered.value, rendered.unit or variable.unit)
    return Resolved(apply_operator(rendered.value, variable), variable.unit)


def _describe(variable: NexusVariable | ScicatVariable | ValueVariable) -> str:
    if isinstance(variable, NexusVariable):
        return f"NXS {variable.path}"
    if isinstance(variable, ScicatVariable):
        return f"SC {variable.url}"
    return f"VALUE{' ' + variable.operator if variable.operator else ''}"


def extract_variables(
    schema: Schema,
    handle: Any,
    builtins: dict[str, Resolved],
    lookup: Lookup | None,
) -> dict[str, Resolved]:
    """Evaluate every variable in file order; each may use those before it.

    Identical SciCat look-ups are made once per call. Any failure names the variable.
    """
    registry = dict(builtins)
    cache: dict[str, Any] = {}

    def cached_lookup(url: str) -> Any:
        if url not in cache:
            assert lookup is not None
            cache[url] = lookup(url)
        return cache[url]

    for name, variable in schema.variables.items():
        try:
            if isinstance(variable, NexusVariable):
                resolved = _nexus(variable, handle)
            elif isinstance(variable, ScicatVariable):
                resolved = _scicat(variable, registry, cached_lookup if lookup else None)
            else:
                resolved = _value(variable, registry)
            registry[name] = Resolved(convert(resolved.value, variable.value_type), resolved.unit)
        except UnresolvedVariable as exc:
            raise VariableError(
                f"schema {schema.id}: variable {name} uses <{exc.args[0]}>, which is not defined before it"
            ) from None
        except (TransientError, ScicatAuthError):
            raise  # SciCat down or our credentials: not this variable's fault
        except IngestError as exc:
            exc.message = f"schema {schema.id}: variable {name} ({_describe(variable)}): {exc.message}"
            exc.args = (exc.message,)
            raise
        except ValueError as exc:
            raise VariableError(
                f"schema {schema.id}: variable {name} ({_describe(variable)}): {exc}"
            ) from None
    return registry

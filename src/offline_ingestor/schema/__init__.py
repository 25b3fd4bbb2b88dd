"""The schema engine: load ``*.imsc.yml`` files, select one, compute variables, render."""

from .loader import SCHEMA_SUFFIXES, BrokenSchema, SchemaSet, load_schema_file, load_schemas
from .models import OPERATORS, VALUE_TYPES, Schema
from .render import render_schema
from .templates import Resolved
from .variables import builtin_variables, extract_variables, now_iso

__all__ = [
    "OPERATORS",
    "SCHEMA_SUFFIXES",
    "VALUE_TYPES",
    "BrokenSchema",
    "Resolved",
    "Schema",
    "SchemaSet",
    "builtin_variables",
    "extract_variables",
    "load_schema_file",
    "load_schemas",
    "now_iso",
    "render_schema",
]

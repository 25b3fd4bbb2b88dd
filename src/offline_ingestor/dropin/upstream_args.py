"""Upstream's one-flag-per-config-key options for ``scicat_background_ingestor``.

Upstream builds its argument parser from its config dataclasses: every key becomes
``--section.sub-section.key`` (underscores as hyphens); a bool is a flag without a value
(``--logging.verbose``), a list takes one or more values, anything else one value
(``--scicat.host X``). Sites put such flags into ``ingestion.offline_ingestor_executable``,
so the drop-in accepts them: a flag naming a key of our config overrides the file's value
(and is validated like it); any other flag is ignored with a warning.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..config import Config, parse_config

__all__ = ["UpstreamArgs", "apply_overrides", "parse_upstream_args"]

_NOT_FLAGS = {"source_path"}


@dataclass
class UpstreamArgs:
    """Overrides as a nested dict, and the flags we ignore (with why)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _field_kind(dotted: str) -> str | None:
    """``bool``, ``list``, ``value`` for a key of our config; None for an unknown one."""
    model: type[BaseModel] = Config
    *sections, last = dotted.split(".")
    for name in sections:
        info = model.model_fields.get(name)
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    info = model.model_fields.get(last)
    if info is None or last in _NOT_FLAGS or model.model_config.get("extra") == "allow":
        return None
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None  # a whole section is not one flag
    if annotation is bool:
        return "bool"
    if typing.get_origin(annotation) is list:
        return "list"
    if typing.get_origin(annotation) is dict:
        return None  # upstream cannot pass a mapping on the command line either
    return "value"


def _insert(target: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, last = dotted.split(".")
    for name in sections:
        target = target.setdefault(name, {})
    target[last] = value


def parse_upstream_args(args: Sequence[str]) -> UpstreamArgs:
    """Parse the flags click did not know (``ctx.args``) into overrides and ignored flags."""
    result = UpstreamArgs()
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if not token.startswith("--"):
            result.ignored.append(f"{token} (not a flag)")
            continue
        name, has_inline, inline = token[2:].partition("=")
        dotted = name.replace("-", "_")
        kind = _field_kind(dotted)
        values: list[str] = [inline] if has_inline else []
        if not has_inline and kind != "bool":
            # Upstream's parser has no positional arguments: everything up to the next flag
            # belongs to this one (one value, or several for a list).
            while index < len(args) and not args[index].startswith("-"):
                values.append(args[index])
                index += 1
                if kind == "value":
                    break
        if kind is None:
            result.ignored.append(f"--{name} (no such key in this ingestor's config)")
        elif kind == "bool":
            text = values[0].lower() if values else "true"
            _insert(result.overrides, dotted, text not in ("false", "0", "no"))
        elif kind == "list":
            _insert(result.overrides, dotted, values)
        elif not values:
            result.ignored.append(f"--{name} (no value given)")
        else:
            _insert(result.overrides, dotted, values[0])
    return result


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _plain(value: Any) -> Any:
    """The config dump with secrets as their values, so that it validates again."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    return value


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """``config`` with ``overrides`` applied and validated like the file's values."""
    if not overrides:
        return config
    data = _plain(config.model_dump(exclude={"source_path"}))
    return parse_config(_merge(data, overrides), config.source_path or "<command line>")

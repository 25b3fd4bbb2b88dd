"""Where a config file's relative paths point: one rule for the validated config and the
drop-in's fast path (which reads the file without pydantic)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_source", "resolve_from"]


def config_source(chosen: str) -> str:
    """The config file's absolute path (``Config.source_path``)."""
    return str(Path(chosen).resolve())


def resolve_from(source_path: str, path: str) -> Path:
    """``path`` from the config, relative to the config file's folder unless absolute."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or not source_path:
        return candidate
    return Path(source_path).parent / candidate

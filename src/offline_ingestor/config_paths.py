"""Where a config file's relative paths point, and the environment variables that override it.

One rule for the validated config (``config.py``) and the drop-in's fast path, which reads
the file without pydantic (``dropin/fast.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BROKER_URL_ENV",
    "CONFIG_ENV",
    "OVERRIDE_ENVS",
    "PASSWORD_ENV",
    "TOKEN_ENV",
    "config_source",
    "resolve_from",
    "within_roots",
]

CONFIG_ENV = "OFFLINE_INGESTOR_CONFIG"
BROKER_URL_ENV = "OFFLINE_INGESTOR_BROKER_URL"
TOKEN_ENV = "OFFLINE_INGESTOR_SCICAT_TOKEN"
PASSWORD_ENV = "OFFLINE_INGESTOR_SCICAT_PASSWORD"
#: What changes the validated config besides the file itself.
OVERRIDE_ENVS = (BROKER_URL_ENV, TOKEN_ENV, PASSWORD_ENV)


def config_source(chosen: str) -> str:
    """The config file's absolute path (``Config.source_path``)."""
    return str(Path(chosen).resolve())


def resolve_from(source_path: str, path: str) -> Path:
    """``path`` from the config, relative to the config file's folder unless absolute."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or not source_path:
        return candidate
    return Path(source_path).parent / candidate


def within_roots(path: Path, allowed_roots: Sequence[str]) -> bool:
    """Whether a resolved ``path`` lies in one of ``ingestion.allowed_data_roots`` (none: any)."""
    roots = [Path(os.path.realpath(root)) for root in allowed_roots]
    return not roots or any(path == root or root in path.parents for root in roots)

"""The files an audit looks at: every regular file under the roots, minus our own products.

The worker is handed paths; it does not walk. What it would ingest is every file under the
data roots that a schema selects (``select-schema``), so the walk yields every regular file
and ``identity`` applies the worker's own selection. Files the ingestor writes itself (hash
files, saved done-writing messages) and hidden files are skipped: they are not data.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import Config
from ..ingest.pid_memo import MEMO_EXTENSION

__all__ = ["audit_roots", "walk"]


def audit_roots(paths: Sequence[str], config: Config) -> list[Path]:
    """The given paths, else ``ingestion.allowed_data_roots`` (resolved, symlinks too)."""
    chosen = list(paths) or list(config.ingestion.allowed_data_roots)
    return [Path(os.path.realpath(os.path.expanduser(path))) for path in chosen]


def _products(config: Config) -> tuple[str, ...]:
    options = config.ingestion.file_handling
    # The pid memo (ingest/pid_memo.py) lives beside the hash file: ours, not a data file.
    products = (options.hash_file_extension, options.message_file_extension, MEMO_EXTENSION)
    return tuple(f".{ext}" for ext in products if ext)


def walk(roots: Sequence[Path], config: Config, since: dt.datetime | None = None) -> Iterator[Path]:
    """Regular files under ``roots`` in a stable order (sorted per directory).

    ``since`` keeps only files modified at or after it. A root that is a file is yielded
    as is (the operator named it).
    """
    suffixes = _products(config)
    cutoff = since.timestamp() if since else None
    for root in roots:
        if root.is_file():
            yield root
            continue
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name.endswith(suffixes):
                    continue
                path = Path(directory) / name
                try:
                    info = path.lstat()
                except OSError:
                    continue  # vanished while we walked
                if not _is_regular(info.st_mode):
                    continue
                if cutoff is not None and info.st_mtime < cutoff:
                    continue
                yield path


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)

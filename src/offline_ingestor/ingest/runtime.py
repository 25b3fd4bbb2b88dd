"""What the steps need besides the job: config, loaded schemas, one SciCat client."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import metrics
from ..config import Config
from ..files.checksums import Progress
from ..schema import SchemaSet, load_schemas
from ..scicat import ScicatClient
from ..scicat.client import Limiter
from ..scicat.learned import LearnedStore
from ..scicat.lookups import LookupCache
from ..scicat.write_order import DatasetOrder
from .pid_memo import PidMemo
from .sample_lease import MemorySampleLease, SampleLease

__all__ = ["Runtime", "RuntimeCache"]


@dataclass
class Runtime:
    """Built once per process (worker child or CLI run) and shared by every job."""

    config: Config
    schemas: SchemaSet
    scicat: ScicatClient
    #: Called with byte counts while the data file is hashed (progress bars).
    progress: Progress | None = None
    #: A command's own process (ingest-now, the drop-in), not a worker's pool child: a crash
    #: in libhdf5 would end it without a word, so ``isolate: auto`` reads in a child process.
    command: bool = False
    #: GETs of schema variables (proposals, instruments, samples), cached per process
    #: (``scicat/lookups.py``); built from ``scicat`` when not given.
    lookup: Callable[[str], Any] = field(default=None)  # type: ignore[assignment]
    #: Whether post-dataset may POST before looking, learnt from SciCat's answers.
    dataset_order: DatasetOrder = field(default_factory=DatasetOrder)
    #: Where a dataset stored under a rewritten pid is kept for reruns (``ingest/pid_memo.py``);
    #: None: nowhere, so such a file ends in a conflict rather than a trap for its rerun.
    pid_memo: PidMemo | None = None
    #: Who may create a sample now (``ingest/sample_lease.py``): Redis in the worker.
    sample_lease: SampleLease = field(default_factory=MemorySampleLease)

    def __post_init__(self) -> None:
        if self.lookup is None:
            self.lookup = LookupCache(self.scicat.get_json, self.config.scicat.lookup_cache_ttl_s)

    @classmethod
    def from_config(
        cls, config: Config, limiter: Limiter | None = None, learned: LearnedStore | None = None
    ) -> Runtime:
        """Load the schemas and open the SciCat session the config names.

        ``limiter``: the worker's deployment-wide ``scicat.rate_limit_per_s``
        (``queue/rate_limit.py``); by default the client limits this process alone.
        ``learned``: a command's cache of what SciCat answered the last process.
        """
        fallback = config.ingestion.fallback_schema_file_path
        schemas = load_schemas(config.schemas_dir, config.resolve(fallback) if fallback else None)
        loaded = [*schemas.schemas, *([schemas.fallback] if schemas.fallback else [])]
        metrics.name_schemas({schema.id: schema.name for schema in loaded})  # the `schema` label
        scicat = ScicatClient(config.scicat, limiter=limiter, learned=learned)
        return cls(config=config, schemas=schemas, scicat=scicat)

    @property
    def dry_run(self) -> bool:
        """Build everything, write nothing (no SciCat POST, no hash file on disk).

        ``ingestion.dry_run``; a command's ``--dry-run`` sets it when loading the config.
        """
        return self.config.ingestion.dry_run

    def schema_problems(self) -> list[str]:
        """One line per schema file that failed to load."""
        return [broken.message for broken in self.schemas.broken]


class RuntimeCache:
    """The runtime of a long-lived process, rebuilt when a schema file changes.

    An operator who fixes a schema can then ``requeue`` its failed files without restarting
    the worker. The schema folder is looked at no more than once a second.
    """

    def __init__(
        self,
        config: Config,
        check_every_s: float = 1.0,
        limiter: Limiter | None = None,
        pid_memo: PidMemo | None = None,
        sample_lease: SampleLease | None = None,
    ) -> None:
        self.config = config
        self.limiter = limiter
        self.pid_memo = pid_memo
        self.sample_lease = sample_lease
        # One runtime for every thread of the process (``worker --io``): per-step state is
        # in ContextVars (current.py), so the SciCat client and its caches are shared.
        self._lock = threading.Lock()
        self.check_every_s = check_every_s
        self._runtime: Runtime | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._checked_at = 0.0

    def get(self) -> Runtime:
        """The current runtime (loading the schemas again if they changed)."""
        with self._lock:
            now = time.monotonic()
            if self._runtime is None or now - self._checked_at >= self.check_every_s:
                self._checked_at = now
                stamp = _schema_stamp(self.config)
                if self._runtime is None or stamp != self._stamp:
                    self._runtime = Runtime.from_config(self.config, self.limiter)
                    self._runtime.pid_memo = self.pid_memo
                    if self.sample_lease is not None:
                        self._runtime.sample_lease = self.sample_lease
                    self._stamp = stamp
            return self._runtime


def _schema_stamp(config: Config) -> tuple[tuple[str, int, int], ...]:
    """Names, mtimes and sizes of the schema files: a change means "load them again"."""
    fallback = config.ingestion.fallback_schema_file_path
    candidates = [config.resolve(fallback)] if fallback else []
    with contextlib.suppress(OSError):
        candidates += [Path(entry.path) for entry in os.scandir(config.schemas_dir)]
    stamps = []
    for path in candidates:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(stamps))

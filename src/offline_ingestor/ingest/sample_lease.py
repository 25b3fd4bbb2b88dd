"""Who may create a sample now: the protocol, and its in-process form (ADR-003).

A sample named in many files is created by whichever file's ``post-dataset`` gets there first.
Its id is derived from what identifies it (``ingest/samples.py``), so SciCat's unique id
already stops a second instance; the lease keeps the writers of one sample in line besides:
one sends at a time, and a writer whose POST got no answer keeps the lease for the POST's
in-flight window (sent + ``scicat.timeout`` + 2 s, the orphaned-write rule of datasets), so no
other writer looks at SciCat before that POST can no longer land.

The worker passes a lease in Redis (``queue/sample_lease.py``), shared by every worker;
``ingest-now`` and the drop-in, one file per process, the in-memory :class:`MemorySampleLease`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["MemorySampleLease", "SampleLease"]


class SampleLease(Protocol):
    """The calls ``post-dataset`` makes around creating one sample."""

    def acquire(self, sample_id: str, holder: str, ttl_s: float) -> float:
        """Take the lease of ``sample_id`` for ``ttl_s``: 0 if taken, else seconds until it may be."""

    def release(self, sample_id: str, holder: str) -> None:
        """Give the lease up if ``holder`` still holds it."""

    def keep(self, sample_id: str, holder: str, ttl_s: float) -> None:
        """Hold the lease ``ttl_s`` from now (a POST without answer: its window), then let it lapse."""


@dataclass
class MemorySampleLease:
    """Leases of one process (``ingest-now``, the drop-in, unit tests)."""

    clock: object = time.monotonic
    _held: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _now(self) -> float:
        return float(self.clock())  # type: ignore[operator]

    def acquire(self, sample_id: str, holder: str, ttl_s: float) -> float:
        with self._lock:
            now = self._now()
            current = self._held.get(sample_id)
            if current is not None and current[0] != holder and current[1] > now:
                return current[1] - now
            self._held[sample_id] = (holder, now + ttl_s)
            return 0.0

    def release(self, sample_id: str, holder: str) -> None:
        with self._lock:
            if self._held.get(sample_id, ("",))[0] == holder:
                del self._held[sample_id]

    def keep(self, sample_id: str, holder: str, ttl_s: float) -> None:
        with self._lock:
            if self._held.get(sample_id, ("",))[0] == holder:
                self._held[sample_id] = (holder, self._now() + ttl_s)

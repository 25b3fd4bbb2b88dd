"""A per-process cache of the SciCat GETs that schema variables make (proposals, instruments,
samples).

Every file of a proposal asks SciCat for the same proposal and the same instrument list: two
of the six requests a new file cost (issue 14). Those records change rarely (a proposal's
title, an instrument's name), so a worker process answers repeats from memory for
``scicat.lookup_cache_ttl_s`` seconds. Only successful answers are kept: an error (404 for a
proposal not yet in SciCat, 5xx, a timeout) is never cached, and a 404 drops any cached
answer for that path, so a record created or deleted meanwhile is seen on the next file.
Writes never go through here; ``ttl_s = 0`` turns the cache off.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ScicatRejected

__all__ = ["LookupCache"]

#: Enough for every proposal/instrument/sample query of a busy day; oldest entries go first.
MAX_ENTRIES = 4096


class LookupCache:
    """Wraps a ``get_json(path)`` callable; thread-safe (a thread pool shares one)."""

    def __init__(
        self,
        get_json: Callable[[str], Any],
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._get_json = get_json
        self.ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, path: str) -> Any:
        """The answer of ``GET path``, from memory when fetched less than ``ttl_s`` ago."""
        if self.ttl_s <= 0:
            return self._get_json(path)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and now - entry[0] < self.ttl_s:
                self.hits += 1
                # A copy: callers may change what they get, the cache must not see it.
                return copy.deepcopy(entry[1])
            self.misses += 1
        try:
            answer = self._get_json(path)
        except ScicatRejected as exc:
            if exc.status == 404:
                self.invalidate(path)
            raise
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[path] = (now, copy.deepcopy(answer))
        return answer

    def invalidate(self, path: str | None = None) -> None:
        """Forget ``path`` (everything when None)."""
        with self._lock:
            if path is None:
                self._entries.clear()
            else:
                self._entries.pop(path, None)

"""Retry policy: which failures are retried, how often, and how long to wait.

The step executor (``ingest/executor.py``) asks this policy after every failed attempt, for the
worker and for ``ingest-now`` alike; the SciCat client does not retry on its own (one
request per call), so there is exactly one retry loop and one backoff formula.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import Config
from ..errors import TransientError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, for a bounded number of retries.

    Only :class:`~offline_ingestor.errors.TransientError` is retried: a permanent error
    (bad input, 4xx, conflict) or an unknown exception needs a fix first.
    """

    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def for_worker(cls, config: Config) -> RetryPolicy:
        """The worker's policy (``queue.max_retries`` …): long waits are cheap there."""
        queue = config.queue
        return cls(queue.max_retries, queue.retry_backoff_s, float(queue.retry_backoff_max_s))

    @classmethod
    def for_command(cls, config: Config) -> RetryPolicy:
        """``ingest-now`` and the drop-in (``scicat.max_retries`` …): someone is waiting."""
        scicat = config.scicat
        return cls(scicat.max_retries, scicat.backoff_s, scicat.backoff_max_s)

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Retry transient errors only, and only while retries remain."""
        return isinstance(error, TransientError) and retries_done < self.max_retries

    def delay(self, retries_done: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retries_done + 1``.

        A server's ``Retry-After`` is honoured as a floor, but never past ``backoff_max_s``
        (the worker's cap stays below the broker's visibility timeout).
        """
        ceiling = min(self.backoff_max_s, self.backoff_s * (2**retries_done))
        backoff = random.uniform(ceiling / 2, ceiling)
        return max(backoff, min(retry_after or 0.0, self.backoff_max_s))

    def outage_delay(self, wait_s: float) -> float:
        """Seconds before a step that waits for SciCat asks again (uncounted: see executor).

        The breaker's ``wait_s`` until its next probe, spread by up to 10 % so that the files
        do not all come back in the same instant, and capped like every retry (below the
        broker's visibility timeout); at least a short backoff, not a busy loop.
        """
        spread = max(wait_s, self.backoff_s) * random.uniform(1.0, 1.1)
        return min(spread, self.backoff_max_s)

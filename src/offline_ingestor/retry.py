"""Retry policy: which failures are retried, how often, and how long to wait.

Used by ``ingest-now`` (its own loop) and by the Celery tasks (as countdowns), so retry
behaviour is decided here and nowhere else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import PermanentError, TransientError

__all__ = ["NEVER_RETRY", "RetryPolicy"]

#: Retrying these cannot help: the input or the configuration must change first.
NEVER_RETRY: tuple[type[BaseException], ...] = (PermanentError,)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, for a bounded number of retries."""

    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Retry transient errors only, and only while retries remain."""
        if isinstance(error, NEVER_RETRY) or not isinstance(error, TransientError):
            return False
        return retries_done < self.max_retries

    def delay(self, retries_done: int) -> float:
        """Seconds to wait before retry number ``retries_done + 1``."""
        ceiling = min(self.backoff_max_s, self.backoff_s * (2**retries_done))
        return random.uniform(ceiling / 2, ceiling)

"""``scicat.rate_limit_per_s`` for a whole deployment: one budget in Redis for every process.

A per-process limit multiplies by processes and hosts, and a thread pool (``worker --io``)
has many more of those; a facility protecting its SciCat wants one number. Every request
takes the next free slot from one Redis key (a Lua script, atomic; Redis's own clock, so
hosts with skewed clocks share one timeline) and sleeps until its slot. If Redis cannot be
reached the process falls back to its own limit, so a Redis blip slows nothing down more
than it would and fails no step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from ..logs import get_logger
from ..scicat.client import Limiter, LocalRateLimiter

__all__ = ["SharedRateLimiter", "shared_limiter"]

log = get_logger("offline_ingestor.scicat")

#: Returns how long the caller must wait for its slot (seconds, as a string).
_TAKE_SLOT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], string.format('%.6f', slot + interval), 'PX', 60000)
return string.format('%.6f', slot - now)
"""


class SharedRateLimiter:
    """At most ``rate`` requests per second from all processes using ``client``'s Redis."""

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        fallback: Limiter,
        *,
        key: str = "oi:scicat:rate",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._take = client.register_script(_TAKE_SLOT)
        self._key = key
        self._fallback = fallback
        self._sleep = sleep

    def wait(self) -> None:
        try:
            delay = float(self._take(keys=[self._key], args=[repr(self._interval)]))
        except redis.RedisError as exc:
            log.warning("scicat.rate_limit_local", reason=f"Redis unavailable: {exc}")
            self._fallback.wait()
            return
        if delay > 0:
            self._sleep(delay)


def shared_limiter(client: redis.Redis, rate: float) -> Limiter | None:
    """``rate`` requests per second for the deployment, this process's own limit as fallback."""
    return SharedRateLimiter(client, rate, LocalRateLimiter(rate)) if rate > 0 else None

"""``scicat.rate_limit_per_s`` as one budget in Redis for every process (real redis-server)."""

from __future__ import annotations

from typing import Any

import redis

from offline_ingestor.queue.rate_limit import SharedRateLimiter
from offline_ingestor.testing.processes import free_port


class Fallback:
    def __init__(self) -> None:
        self.waits = 0

    def wait(self) -> None:
        self.waits += 1


def test_processes_share_one_budget(redis_server: Any) -> None:
    """Two limiters (two processes) at 1 request/s: six requests are spread over five seconds."""
    slept: list[float] = []
    limiters = [
        SharedRateLimiter(redis.Redis.from_url(redis_server.url), 1.0, Fallback(), sleep=slept.append)
        for _ in range(2)
    ]
    for index in range(6):
        limiters[index % 2].wait()
    # Nobody really sleeps here, so each slot is one second after the one before
    assert len(slept) == 5 and max(slept) > 4.0


def test_without_redis_each_process_keeps_its_own_limit() -> None:
    """A Redis blip falls back to the process's limiter instead of failing the step."""
    fallback = Fallback()
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    SharedRateLimiter(client, 5.0, fallback).wait()
    assert fallback.waits == 1

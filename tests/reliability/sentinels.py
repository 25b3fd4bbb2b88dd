"""A Redis Sentinel set on loopback ports: the test's Redis as primary, one replica, three
sentinels (quorum 2). Shared by the failover cases (test_redis_outages, test_liveness_chaos)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import wait_for
from offline_ingestor.testing.processes import RedisServer, SentinelServer

__all__ = ["promoted", "sentinel_queue", "sentinel_set"]

MASTER = "oi-master"


def _replication_up(replica: RedisServer) -> bool:
    try:
        info = redis.Redis.from_url(replica.url).info("replication")
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up"


def _sentinels_ready(sentinels: list[SentinelServer], name: str) -> bool:
    for sentinel in sentinels:
        try:
            state = redis.Redis(port=sentinel.port, decode_responses=True).sentinel_master(name)
        except redis.RedisError:
            return False
        if (
            int(state.get("num-other-sentinels", 0)) < len(sentinels) - 1
            or int(state.get("num-slaves", 0)) < 1
        ):
            return False
    return True


def sentinel_queue(sentinels: list[SentinelServer]) -> dict[str, Any]:
    """The ``queue`` keys that point workers and producers at the sentinels."""
    return {
        "broker_url": ";".join(f"sentinel://{sentinel.address}" for sentinel in sentinels),
        "sentinel": {"master_name": MASTER},
    }


def promoted(sentinels: list[SentinelServer], replica: RedisServer) -> bool:
    """Every sentinel names the replica as the master now."""
    return all(sentinel.master_port_now() == replica.port for sentinel in sentinels)


@pytest.fixture
def sentinel_set(redis_server: RedisServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The test's Redis as primary, one replica, three sentinels (quorum 2) on loopback ports."""
    replica = RedisServer(
        tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(redis_server.port)]
    )
    replica.start()
    sentinels = [
        SentinelServer(
            tmp_path / f"sentinel-{index}", redis_server.port, down_after_ms=1000, failover_timeout_ms=4000
        )
        for index in range(3)
    ]
    try:
        wait_for(lambda: _replication_up(replica), 20, "the replica to sync")
        for sentinel in sentinels:
            sentinel.start()
        wait_for(lambda: _sentinels_ready(sentinels, MASTER), 30, "the sentinels to find each other")
        yield {"primary": redis_server, "replica": replica, "sentinels": sentinels}
    finally:
        for sentinel in sentinels:
            sentinel.stop(kill=True)
        replica.stop(kill=True)

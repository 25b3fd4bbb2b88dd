"""The producer API against real Redis servers (no worker needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import ymir_file
from offline_ingestor.producer import enqueue
from offline_ingestor.testing.processes import RedisServer
from offline_ingestor.testing.scenario import make_config

pytestmark = pytest.mark.redis


def queued_messages(url: str) -> int:
    client = redis.Redis.from_url(url)
    return sum(int(client.llen(name)) for name in client.scan_iter("ingest*") if client.type(name) == b"list")


def test_one_process_can_enqueue_to_two_brokers(redis_server: Any, tmp_path: Path, data_root: Path) -> None:
    """Enqueueing with a second config publishes to the second Redis, not the first one's pool."""
    # Given two Redis servers and a config for each
    second = RedisServer(tmp_path / "second").start()
    try:
        first_config = make_config(
            "http://127.0.0.1:9/api/v3", data_root, queue={"broker_url": redis_server.url}
        )
        second_config = make_config("http://127.0.0.1:9/api/v3", data_root, queue={"broker_url": second.url})
        # When one file is enqueued with each
        assert enqueue(ymir_file(data_root, name="a.hdf"), config=first_config).queued
        assert enqueue(ymir_file(data_root, name="b.hdf"), config=second_config).queued
        # Then each Redis holds exactly its own chain's first message
        assert (queued_messages(redis_server.url), queued_messages(second.url)) == (1, 1)
    finally:
        second.stop(kill=True)


def test_package_level_enqueue_is_the_function() -> None:
    """offline_ingestor.enqueue stays callable after every module of the package is imported."""
    import importlib
    import pkgutil

    import offline_ingestor

    for module in pkgutil.walk_packages(offline_ingestor.__path__, "offline_ingestor."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    assert callable(offline_ingestor.enqueue)
    assert offline_ingestor.enqueue is enqueue

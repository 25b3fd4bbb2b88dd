"""Our queue in Redis uses kombu's default layout, keeps started chains first, and an old
``sep: ":"`` layout is converted at worker start without losing a message."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from offline_ingestor.config import parse_config
from offline_ingestor.queue.broker_layout import migrate_colon_layout, queue_keys
from offline_ingestor.worker.settings import FIRST_STEP_PRIORITY, STEP_PRIORITY, celery_settings

pytestmark = [pytest.mark.redis]

OLD_OPTIONS = {"priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority"}


def publish(url: str, options: dict[str, Any], body: str, priority: int) -> None:
    queue = Queue("ingest", Exchange("ingest", "direct"), "ingest")
    with Connection(url, transport_options=options) as conn:
        conn.Producer().publish(
            body, exchange=queue.exchange, routing_key="ingest", declare=[queue], priority=priority
        )


def drain(url: str, options: dict[str, Any]) -> list[str]:
    with Connection(url, transport_options=options) as conn:
        queue = conn.SimpleQueue("ingest", no_ack=True)
        bodies = []
        while True:
            try:
                bodies.append(queue.get(timeout=0.5).payload)
            except queue.Empty:
                return bodies


def our_options(url: str) -> dict[str, Any]:
    return dict(celery_settings(parse_config({"queue": {"broker_url": url}}))["broker_transport_options"])


def test_started_chains_are_served_before_new_ones(redis_server: Any) -> None:
    """A next step published after a backlog of first steps is consumed first."""
    options = our_options(redis_server.url)
    for index in range(3):
        publish(redis_server.url, options, f"new-{index}", FIRST_STEP_PRIORITY)
    publish(redis_server.url, options, "next-step", STEP_PRIORITY)
    assert drain(redis_server.url, options) == ["next-step", "new-0", "new-1", "new-2"]


def test_waiting_messages_are_in_the_default_layout_keys(redis_server: Any) -> None:
    """Messages sit under the keys stock tools read (queue, queue\\x06\\x169)."""
    options = our_options(redis_server.url)
    publish(redis_server.url, options, "a", FIRST_STEP_PRIORITY)
    publish(redis_server.url, options, "b", STEP_PRIORITY)
    client = redis.Redis.from_url(redis_server.url)
    assert [client.llen(key) for key in queue_keys("ingest")] == [1, 0, 0, 1]
    assert not client.exists("ingest:9")


def test_old_colon_layout_is_converted_without_losing_messages(redis_server: Any) -> None:
    """Bindings and waiting messages of the old layout work with the new one after migration."""
    publish(redis_server.url, OLD_OPTIONS, "old-first-step", 9)
    publish(redis_server.url, OLD_OPTIONS, "old-next-step", 0)
    options = our_options(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    with pytest.raises(ValueError, match="not enough values to unpack"):
        publish(redis_server.url, options, "new", FIRST_STEP_PRIORITY)  # what an upgrade met
    moved = migrate_colon_layout(client, "ingest")
    assert moved == {"bindings": 1, "messages": 1}
    assert migrate_colon_layout(client, "ingest") == {"bindings": 0, "messages": 0}  # idempotent
    publish(redis_server.url, options, "new", FIRST_STEP_PRIORITY)
    assert drain(redis_server.url, options) == ["old-next-step", "old-first-step", "new"]

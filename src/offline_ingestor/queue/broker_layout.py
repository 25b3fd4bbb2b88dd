"""Where kombu keeps our queue in Redis, and the move from the old ``sep: ":"`` layout.

We use kombu's default Redis transport layout (separator ``"\\x06\\x16"``, priority steps
0, 3, 6, 9) so that stock tools started with nothing but the broker URL (Flower,
``celery inspect``, celery-exporter) read the same keys as the worker: with another
separator they cannot parse the exchange bindings (``ValueError: not enough values to
unpack``), see no worker and count no message.

Releases before this one set ``sep: ":"`` and ``priority_steps`` 0..9, so a Redis that ran
them holds bindings like ``ingest::ingest`` and waiting first steps under ``ingest:9``. With
the default separator kombu cannot even read such a binding, so the worker converts them
once at start (:func:`migrate_colon_layout`, idempotent, safe while producers publish).
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["PRIORITY_STEPS", "SEP", "migrate_colon_layout", "queue_key", "queue_keys"]

log = structlog.get_logger("offline_ingestor.broker_layout")

#: kombu's defaults (``kombu.transport.redis.Channel``); not set in our transport options.
SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)

_OLD_SEP = ":"
_BINDINGS = "_kombu.binding.*"


def _step(priority: int) -> int:
    """kombu rounds a priority down to the nearest step."""
    return max(step for step in PRIORITY_STEPS if step <= max(0, priority))


def queue_key(queue_name: str, priority: int) -> str:
    """The Redis list holding ``queue_name``'s messages of ``priority``."""
    step = _step(priority)
    return f"{queue_name}{SEP}{step}" if step else queue_name


def queue_keys(queue_name: str) -> list[str]:
    """Every Redis list of ``queue_name`` (one per priority step), served in this order."""
    return [queue_key(queue_name, step) for step in PRIORITY_STEPS]


def migrate_colon_layout(client: Any, queue_name: str) -> dict[str, int]:
    """Convert bindings and priority lists of the old ``sep: ":"`` layout; counts what moved."""
    moved = {"bindings": 0, "messages": 0}
    for key in client.scan_iter(match=_BINDINGS):
        for raw in client.smembers(key):
            member = raw.decode() if isinstance(raw, bytes) else str(raw)
            if SEP in member:
                continue
            parts = member.split(_OLD_SEP)
            # routing key, pattern, queue; a member that does not split in three is stale
            # (it is declared again by whoever still uses it).
            if len(parts) == 3:
                client.sadd(key, SEP.join(parts))
            client.srem(key, raw)
            moved["bindings"] += 1
    for level in range(1, 10):
        old = f"{queue_name}{_OLD_SEP}{level}"
        new = queue_key(queue_name, level)
        # RPOPLPUSH keeps the order: the oldest message (the tail) is served first after
        # the move too. One message at a time, so a crash here loses none.
        while client.rpoplpush(old, new) is not None:
            moved["messages"] += 1
    if moved["bindings"] or moved["messages"]:
        log.warning("broker.migrated_colon_layout", queue=queue_name, **moved)
    return moved


def migrate_broker(broker_url: str, queue_name: str) -> None:
    """Run :func:`migrate_colon_layout` on a plain Redis broker URL (others are skipped)."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    try:
        migrate_colon_layout(client, queue_name)
    except redis.RedisError as exc:
        # The worker waits for Redis itself; an old layout would then stop it with kombu's
        # ValueError, and a restart once Redis is back converts it.
        log.warning("broker.migration_skipped", reason=str(exc))
    finally:
        client.close()

"""A workaround for a kombu 5.7 Redis-transport bug that ends the worker on a broker outage.

Remove when kombu fixes ``QoS.restore_unacked`` after ``Connection.collect()``; the test
``tests/reliability/test_redis_faults.py::test_closing_a_collected_connection_with_unacked_messages``
fails without it and tells when it is no longer needed.
"""

from __future__ import annotations

from typing import Any

__all__: list[str] = []


def _patch_restore_unacked_after_collect() -> None:
    """Stop a broker connection loss from ending the worker with "Unrecoverable error".

    On a connection loss Celery's consumer calls ``connection.collect()`` and then
    ``connection.close()``. ``collect()`` tries to close the default channel, but when the
    channel was waiting in BRPOP its close raises a ConnectionError before marking it closed,
    and ``collect()`` then detaches the transport (``transport.client = None``). The second
    close finds the channel still open, and kombu's Redis QoS tries to put the unacked
    (late-acked, still running) messages back through a new connection pool, built from
    ``transport.client.hostname``: AttributeError, which neither kombu nor Celery treat as a
    connection error, so the worker stopped (exit status 0) instead of reconnecting. Seen in
    tests/reliability/test_redis_faults.py (kombu 5.7 / celery 5.7).

    With the transport detached, Redis cannot be reached through this channel anyway (the
    same restore fails with ConnectionError when the first close gets that far): the messages
    stay in the unacked hash and ``restore_visible`` requeues them after the visibility
    timeout, as for a killed worker.
    """
    from kombu.transport import redis as kombu_redis

    original: Any = kombu_redis.QoS.restore_unacked
    if getattr(original, "_offline_ingestor", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        if client is None and getattr(self.channel.connection, "client", None) is None:
            self._delivered.clear()
            return None
        return original(self, client)

    restore_unacked._offline_ingestor = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]


_patch_restore_unacked_after_collect()

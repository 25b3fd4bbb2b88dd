"""Keep the worker alive, and its messages safe, while Redis is at ``maxmemory``.

With ``maxmemory-policy noeviction`` (the only safe policy for a queue) a full Redis refuses
every command that may add data, and every command inside a MULTI. kombu's Redis QoS uses
MULTI pipelines for its bookkeeping, so a full Redis made the worker stop with
"Unrecoverable error: OutOfMemoryError" (tests/reliability/test_redis_outages.py):

* ``ack`` (ZREM + HDEL in a MULTI) failed in the event loop. Both commands free memory and a
  full Redis runs them outside a MULTI: we send them without one.
* ``append`` (the unacked record written after BRPOP took the message off the queue) failed
  with the message in no list at all. We wait until Redis takes the record: the message is
  in our memory only, the same window kombu always has between BRPOP and this write.
* ``reject(requeue=True)`` and ``restore_visible`` (LPUSH back to the queue) cannot succeed;
  the message stays in the unacked hash, and is put back after the visibility timeout, as
  for a lost worker.
* A control command's reply (``celery inspect``, ``celery control revoke``, Flower's polls:
  an LPUSH) was refused; Celery's pidbox then logged "Control command error" and re-declared
  its queue, whose MULTI (LLEN) and SADD a full Redis refuses too: "Unrecoverable error",
  worker gone (issue 22, problem 5; ``tests/worker/test_redis_oom.py``). The reply is dropped
  with a warning instead (the command itself ran; the caller times out waiting for it).
* Celery's consumer restarts after a lost broker connection, and its bootsteps write to Redis:
  mingle's reply queue (declared, then deleted in a MULTI), the gossip, pidbox and task queues
  (each a MULTI with LLEN and an SADD of a ``_kombu.binding.*`` set). Celery retries a restart
  only after a connection error, and OutOfMemoryError is a channel error: a blip while Redis
  was full ended the worker with "Unrecoverable error" (issue 22;
  ``tests/worker/test_redis_oom.py``). An OOM during the consumer's run now restarts the
  consumer (``broker_channel_error_retry``, narrowed to this one error) once Redis takes a
  write again.

Applied on import (worker_signals imports it in the worker).
"""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog

from ..queue.connection import redis_failure

__all__ = ["is_full"]

log = structlog.get_logger("offline_ingestor.kombu_oom")

_WAIT_S = 1.0
_WAIT_MAX_S = 8.0
#: Never written: ``SET ... XX`` on a missing key stores nothing, yet Redis refuses it at
#: ``maxmemory`` exactly as it refuses a write that would add data.
_PROBE_KEY = "oi:probe:redis-takes-writes"


def is_full(exc: BaseException) -> bool:
    """Redis refused a write for lack of memory (or as a read-only replica)."""
    return redis_failure(exc) == "refused"


def _patch() -> None:
    from kombu.transport import redis as kombu_redis
    from kombu.transport import virtual

    qos: Any = kombu_redis.QoS
    if getattr(qos, "_offline_ingestor_oom", False):
        return
    original_append = qos.append
    original_reject = qos.reject
    original_restore_visible = qos.restore_visible

    def append(self: Any, message: Any, delivery_tag: Any) -> None:
        warned = False
        while True:
            try:
                return original_append(self, message, delivery_tag)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                if not is_full(exc):
                    raise
                if not warned:
                    log.warning("redis.full_waiting", action="record an unacked message", error=str(exc))
                    warned = True
                time.sleep(_WAIT_S)

    def detached(self: Any, action: str) -> bool:
        # After Celery's consumer collected a lost connection (worker/kombu_patches.py) this channel
        # cannot reach Redis; kombu would raise AttributeError and the worker stop. The
        # message stays in the unacked hash: restore_visible requeues it, and a finished step
        # is then skipped as done.
        if getattr(self.channel.connection, "client", None) is not None:
            return False
        log.warning("redis.connection_detached", action=action, outcome="left unacked for restore_visible")
        return True

    def ack(self: Any, delivery_tag: Any) -> None:
        if detached(self, "ack"):
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            return
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)  # no MULTI: runs even at maxmemory
            pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag)
            pipe.execute()
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self: Any, delivery_tag: Any, requeue: bool = False) -> None:
        if not requeue:
            ack(self, delivery_tag)
            return
        if detached(self, "requeue"):
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            return
        try:
            original_reject(self, delivery_tag, requeue=True)
        except redis.ResponseError as exc:
            if not is_full(exc):
                raise
            log.warning("redis.full_requeue_later", action="requeue a message", error=str(exc))
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]  # unacked hash keeps it

    def restore_visible(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            original_restore_visible(self, *args, **kwargs)
        except redis.ResponseError as exc:
            if not is_full(exc):
                raise
            log.warning("redis.full_restore_later", action="restore unacked messages", error=str(exc))

    qos.append, qos.ack, qos.reject, qos.restore_visible = append, ack, reject, restore_visible
    qos._offline_ingestor_oom = True


def _patch_control_replies() -> None:
    from kombu import pidbox

    node: Any = pidbox.Node
    if getattr(node, "_offline_ingestor_oom", False):
        return
    original_reply = node.reply

    def reply(self: Any, data: Any, exchange: Any, routing_key: Any, ticket: Any, **kwargs: Any) -> None:
        try:
            original_reply(self, data, exchange, routing_key, ticket, **kwargs)
        except Exception as exc:
            if not is_full(exc):
                raise
            log.warning("redis.full_reply_dropped", action="reply to a control command", error=str(exc))

    node.reply = reply
    node._offline_ingestor_oom = True


class _Outage:
    """The consumer's current wait for a full Redis (main process only: one consumer)."""

    # One warning when it begins and one line when the consumer consumes again, however many
    # restarts meet a full Redis in between.

    since: float | None = None
    restarts = 0


def _wait_for_room(connection: Any) -> None:
    """Return once Redis takes writes again, or once it cannot be asked (Celery reconnects)."""
    from celery.worker.state import maybe_shutdown

    if _Outage.since is None:
        _Outage.since, _Outage.restarts = time.monotonic(), 0
        log.warning("redis.full_waiting", action="restart the consumer (declare its queues)")
    # A Redis hovering at maxmemory takes the probe and refuses the restart's writes a moment
    # later; each such restart doubles the wait, so Celery's restart lines stay few.
    every_s = min(_WAIT_S * 2**_Outage.restarts, _WAIT_MAX_S)
    _Outage.restarts += 1
    while True:
        maybe_shutdown()  # SIGTERM while waiting: stop as Celery's own reconnect loop does
        time.sleep(every_s)
        try:
            with connection.default_channel.conn_or_acquire() as client:
                client.set(_PROBE_KEY, "", xx=True)
        except redis.exceptions.OutOfMemoryError:
            continue
        except Exception as exc:
            # Redis unreachable, a failover, a broken channel: not ours to wait out. Celery's
            # handling of the OOM that follows reconnects (and logs) as after any loss.
            log.info("redis.full_wait_ended", outcome="cannot ask Redis", error=repr(exc))
            return
        return


def _patch_consumer_restart() -> None:
    from celery.worker.consumer import consumer as celery_consumer

    consumer: Any = celery_consumer.Consumer
    if getattr(consumer, "_offline_ingestor_oom", False):
        return
    original_init = consumer.__init__
    original_on_error = consumer.on_connection_error_after_connected
    original_on_ready = consumer.on_ready

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # With broker_channel_error_retry (worker/settings.py) these errors restart the consumer
        # as a lost connection does; any other channel error still ends the worker, as before.
        self.channel_errors = (redis.exceptions.OutOfMemoryError,)

    def on_connection_error_after_connected(self: Any, exc: BaseException) -> None:
        if isinstance(exc, redis.exceptions.OutOfMemoryError) and self.connection is not None:
            # Wait before Celery tears the connection down: restarting at once would meet the
            # same refusal, and Celery logs each restart and stops after five within a second.
            _wait_for_room(self.connection)
        original_on_error(self, exc)

    def on_ready(self: Any) -> None:
        # The event loop calls this once the consumer's queues are declared and consumed.
        if _Outage.since is not None:
            waited_s = round(time.monotonic() - _Outage.since, 1)
            log.info(
                "redis.full_over", action="consuming again", waited_s=waited_s, restarts=_Outage.restarts
            )
            _Outage.since = None
        original_on_ready(self)

    consumer.__init__ = __init__
    consumer.on_connection_error_after_connected = on_connection_error_after_connected
    consumer.on_ready = on_ready
    consumer._offline_ingestor_oom = True


_patch()
_patch_control_replies()
_patch_consumer_restart()

"""Every Celery setting we rely on, chosen on purpose, explained in one place.

The failure model: a worker process may be killed at any instruction (OOM, SIGKILL, node
loss), Redis may restart, SciCat may be slow or down. We want every file ingested exactly
once. Celery gives at-least-once delivery with these settings; the steps' SciCat checks and
the job records in Redis turn that into exactly-once effects.
"""

from __future__ import annotations

from typing import Any

from ..config import Config

__all__ = ["FIRST_STEP_PRIORITY", "STEP_PRIORITY", "celery_settings"]

#: kombu's Redis transport serves lower numbers first. Steps of a started chain go ahead of
#: new chains, so a backlog of thousands of files does not delay every file's completion
#: until the whole backlog has passed its first step. Both are kombu default priority steps
#: (0, 3, 6, 9; queue/broker_layout.py), so the default transport layout keeps this behaviour.
STEP_PRIORITY = 0
FIRST_STEP_PRIORITY = 9


def celery_settings(config: Config) -> dict[str, Any]:
    """Celery configuration for our app from our config file."""
    queue = config.queue
    transport = {
        # A late-acked message is redelivered if not acked within this many seconds. Every
        # task must finish well within it (task_time_limit below) or it runs twice.
        "visibility_timeout": queue.visibility_timeout_s,
        # No "sep" and no "priority_steps": kombu's defaults, which stock Flower, `celery
        # inspect` and celery-exporter assume when given only the broker URL
        # (queue/broker_layout.py). Priorities 0 and 9 are default steps.
        # Look for unacked messages of dead workers every few seconds instead of kombu's
        # ~100 s, so a lost message comes back soon after its visibility timeout.
        "unacked_restore_interval": max(1, min(10, queue.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
        # The restore sweep holds a lock key for up to this long. A worker killed, or a
        # primary lost to a failover, while a sweep ran left it for kombu's default 300 s,
        # and nothing was restored meanwhile; a sweep takes milliseconds.
        "unacked_mutex_expire": 30,
        # Message bodies as they are (JSON text) instead of base64: a third smaller, and a
        # queued file is mostly its message (bench/RESULTS.md, Redis memory per queued file).
        # Consumers decode each message by its own ``body_encoding`` property, so base64
        # messages of other producers (celery-node, older releases) are still read. None, not
        # "utf-8": every kombu version reads None as "not encoded" (a tool with an older
        # kombu, e.g. a Flower image, reading our workers' replies and events).
        "body_encoding": None,
    }
    # Redis Sentinel: kombu's documented sentinel:// transport with the master's name.
    from ..queue.connection import broker_settings

    broker_url, sentinel_options = broker_settings(queue)
    transport.update(sentinel_options)
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # A full Redis (OOM) while the consumer (re)starts restarts it once Redis takes writes,
        # instead of ending the worker; worker/kombu_oom.py narrows the retried channel errors
        # to that one, and waits for room with one log line.
        "broker_channel_error_retry": True,
        # Messages are JSON only: no pickle from a shared Redis.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # No result backend: steps hand each other small keys inside the chain messages and
        # our job records hold state, so a second store would only cost writes.
        "task_ignore_result": True,
        "task_default_queue": queue.queue_name,
        "task_default_priority": FIRST_STEP_PRIORITY,
        # Ack after the task returns: a crash mid-step redelivers the message (steps are
        # idempotent) instead of losing the file.
        "task_acks_late": True,
        # A killed child process requeues its message too; Celery does so without limit, so
        # the step executor counts deaths per step and gives up after queue.max_redeliveries.
        "task_reject_on_worker_lost": True,
        # A Python exception is final after our retries: ack it and let the errback record it.
        "task_acks_on_failure": True,
        # Kill a stuck task before its message's visibility timeout runs out, so it cannot
        # run twice concurrently; long enough to hash a 100 GB file at 100 MB/s (~17 min)
        # with a wide margin for slow storage.
        "task_time_limit": queue.task_time_limit_s,
        # The soft limit gives the step a moment to clean up before the hard kill.
        "task_soft_time_limit": queue.task_time_limit_s - max(1, min(60, queue.task_time_limit_s // 10)),
        # One message per free process: long tasks are not hoarded by a busy child.
        "worker_prefetch_multiplier": 1,
        # After a broker connection loss late-acked tasks are redelivered; stop running ones
        # instead of letting them run in parallel with their redelivered copies.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # No soft shutdown: it applies only to a cold shutdown and then sleeps its whole
        # timeout even when the steps are done. SIGTERM is bounded by queue.shutdown_grace_s
        # instead (worker/stop.py), after which the cold shutdown requeues at once.
        "worker_soft_shutdown_timeout": 0.0,
        # Recycle children now and then: h5py/HDF5 keep caches.
        "worker_max_tasks_per_child": 10_000,
        "worker_concurrency": queue.concurrency,
        # Events for Flower and celery-exporter (queue.task_events, on by default):
        # about four extra Redis publishes per task (bench/RESULTS.md).
        "worker_send_task_events": queue.task_events,
        "task_send_sent_event": queue.task_events,
        # We configure structlog ourselves.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }

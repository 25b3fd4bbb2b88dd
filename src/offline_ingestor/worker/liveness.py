"""Worker hooks for liveness: process heartbeats in Redis, and the reconciler thread.

Every process beats (``queue/heartbeats.py``): pool processes from ``worker_process_init``,
the main process from ``worker_ready`` (its value lists the deliveries it holds). A task's
file is added to its process's heartbeat at ``task_prerun``; Redis gets it in the step's
``begin_step`` round trip, ahead of the lease script, so the lease's holder is seen running
it. The main process also starts the reconciler (``worker/reconciler.py``), which acts only
while elected.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import signals

from ..queue.heartbeats import ProcessHeartbeat
from .chain import step_of_task
from .running import log, running_config

__all__ = ["current_heartbeat"]

_state: dict[str, Any] = {}


def current_heartbeat() -> ProcessHeartbeat | None:
    """This process's heartbeat, once started."""
    return _state.get("heartbeat")


def _held_tags() -> list[str]:
    """Delivery tags the main process holds: reserved, waiting for an ETA, or running."""
    from celery.worker import state

    requests = [*state.reserved_requests, *state.active_requests, *state.scheduled_requests]
    # The tag is on the kombu message: Celery's ``Request.delivery_info`` leaves it out.
    tags = {str(getattr(getattr(request, "message", None), "delivery_tag", "") or "") for request in requests}
    tags.discard("")
    return sorted(tags)


def _start(config: Any, *, main: bool) -> ProcessHeartbeat:
    from ..queue.connection import redis_client

    clients: dict[str, Any] = {}

    def client() -> Any:
        if "redis" not in clients:
            clients["redis"] = redis_client(config.queue)
        return clients["redis"]

    queue = config.queue
    heartbeat = ProcessHeartbeat(
        client,
        interval_s=queue.heartbeat_interval_s,
        ttl_s=queue.heartbeat_ttl_s,
        tags=_held_tags if main else None,
    )
    heartbeat.start()
    _state["heartbeat"] = heartbeat
    return heartbeat


@signals.worker_process_init.connect
def _pool_process_started(**_: Any) -> None:
    config = running_config()
    if config is not None:
        _state.pop("heartbeat", None)  # forked from the main process: not ours
        _start(config, main=False)


@signals.worker_ready.connect
def _main_ready(sender: Any = None, **_: Any) -> None:
    config = running_config()
    if config is None:
        return
    heartbeat = _start(config, main=True)
    from celery import current_app

    from ..queue.job_store import JobStore
    from .reconciler import Reconciler

    app = getattr(sender, "app", None) or current_app  # not .app: it imports this module

    stores: list[JobStore] = []

    def store() -> JobStore:
        if not stores:
            stores.append(JobStore.for_config(config))
        return stores[0]

    reconciler = Reconciler(app, config, store, heartbeat.steady_for)
    reconciler.start()
    _state["reconciler"] = reconciler
    queue = config.queue
    log.info(
        "liveness.started",
        process=heartbeat.ident,
        interval_s=queue.heartbeat_interval_s,
        ttl_s=queue.heartbeat_ttl_s,
        reconcile_interval_s=queue.reconcile_interval_s,
    )


@signals.task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    heartbeat, ref = current_heartbeat(), args[0] if args and isinstance(args[0], dict) else {}
    if heartbeat is not None and ref.get("key"):
        stack = contextlib.ExitStack()
        stack.enter_context(heartbeat.running(str(ref["key"]), step_of_task(getattr(task, "name", ""))))
        _state[f"task:{task_id}"] = stack


@signals.task_postrun.connect
def _task_ended(task_id: str | None = None, **_: Any) -> None:
    stack = _state.pop(f"task:{task_id}", None)
    if stack is not None:
        stack.close()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _stopped(**_: Any) -> None:
    heartbeat, reconciler = _state.pop("heartbeat", None), _state.pop("reconciler", None)
    if reconciler is not None:
        reconciler.stop()
    if heartbeat is not None:
        heartbeat.stop()

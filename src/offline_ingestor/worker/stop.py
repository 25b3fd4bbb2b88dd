"""A bounded stop: on SIGTERM running steps get ``queue.shutdown_grace_s``, then are abandoned.

Celery's answer to SIGTERM is a warm shutdown, which waits for the running tasks without
limit: a 16 GiB hash ran 49 s past the SIGTERM, a container runtime then SIGKILLed the
worker, and the late-acked message waited for the visibility timeout (hours) before another
worker got it. Celery 5.5's soft shutdown (``worker_soft_shutdown_timeout``) applies only to
a cold shutdown (SIGQUIT, or SIGTERM with ``REMAP_SIGTERM=SIGQUIT`` in the environment
before billiard is imported) and then always sleeps the whole timeout, even when the steps
are done after a second.

The same bound applies to Celery's remote ``shutdown`` command (``celery control shutdown``,
Flower's Shut Down button): it raises ``WorkerShutdown`` in the consumer, a warm shutdown
that sends no ``worker_shutting_down`` signal, so :func:`bound_remote_shutdown` starts the
timer from the command itself.

So we keep the warm shutdown (a step that finishes in time is acked, and the worker exits
as soon as it has) and bound it ourselves: when SIGTERM arrives, a timer starts; if the
worker is still running when it fires, it sends the worker SIGQUIT, Celery's cold shutdown.
That terminates the running steps' processes; the late-acked messages are rejected with
requeue (``task_reject_on_worker_lost``) or restored from kombu's unacked hash when the
channel closes, so they are back in the queue at once. A redelivered step is safe: every step
is idempotent, and an abandoned execution is uncounted (``JobStore.forgive_run``) so that a
file stopped mid-hash at every deploy never reaches ``queue.max_redeliveries``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import structlog

__all__ = ["bound_remote_shutdown", "report_offline_as_idle", "start_stop_timer"]

log = structlog.get_logger("offline_ingestor.worker_stop")

_started = threading.Event()


def _abandon_after(grace_s: float, pid: int) -> None:
    log.info("worker.stopping", grace_s=grace_s, process=pid)
    time.sleep(grace_s)
    from celery.worker import state

    running = len(state.active_requests)
    if not running:
        return  # the steps are done; the warm shutdown is only closing connections
    log.warning("worker.stop_grace_exceeded", grace_s=grace_s, abandoned=running, process=pid)
    _forgive(list(state.active_requests))
    # Celery's cold shutdown: terminate running steps, requeue their messages, exit.
    os.kill(pid, signal.SIGQUIT)


def _forgive(requests: list[Any]) -> None:
    """Abandoned steps were stopped, not lost: they must not count towards the redelivery cap."""
    from ..queue.heartbeats import process_id
    from ..queue.job_store import JobStore
    from .chain import step_of_task
    from .running import running_config

    config = running_config()
    if config is None:
        return
    try:
        store = JobStore.for_config(config)
        for request in requests:
            ref = request.args[0] if request.args and isinstance(request.args[0], dict) else {}
            if ref.get("key"):
                process = process_id(request.worker_pid) if request.worker_pid else ""
                store.forgive_run(ref["key"], step_of_task(request.task.name), process)
    except Exception as exc:  # best effort: the worst case is one run counted too many
        log.warning("worker.forgive_failed", error=str(exc))


def start_stop_timer(grace_s: float) -> None:
    """Start (once) the timer that turns a warm shutdown into a cold one after ``grace_s``."""
    if _started.is_set():
        return
    _started.set()
    # Called from a signal handler: no logging here, the thread logs.
    pid = os.getpid()
    threading.Thread(target=_abandon_after, args=(grace_s, pid), name="stop-grace", daemon=True).start()


def bound_remote_shutdown(grace_s: float) -> None:
    """Make Celery's remote ``shutdown`` command start the same timer as SIGTERM (once per process)."""
    from celery.worker import control

    original: Any = control.Panel.data["shutdown"]
    if getattr(original, "_offline_ingestor", False):
        return

    def shutdown(state: Any, msg: str = "Got shutdown from remote", **kwargs: Any) -> Any:
        start_stop_timer(grace_s)
        return original(state, msg=msg, **kwargs)

    shutdown._offline_ingestor = True  # type: ignore[attr-defined]
    # The worker's mailbox dispatches through this very dict (celery/worker/pidbox.py).
    control.Panel.data["shutdown"] = shutdown


def report_offline_as_idle() -> None:
    """Make the worker's last event (``worker-offline``) say that it runs nothing.

    Celery sends it while stopping, before the cold shutdown has terminated the abandoned
    steps, so it carried ``active=N``; Flower keeps a worker's last ``active`` count and
    showed those steps as still running on a worker that was gone. A stopped worker runs
    nothing: its abandoned steps are back in the queue.
    """
    from celery.worker import heartbeat

    original: Any = heartbeat.Heart._send
    if getattr(original, "_offline_ingestor", False):
        return

    def _send(self: Any, event: str, retry: bool = True) -> Any:
        if event != "worker-offline":
            return original(self, event, retry)
        return self.eventer.send(
            event,
            freq=self.interval,
            active=0,
            processed=heartbeat.all_total_count[0],
            loadavg=heartbeat.load_average(),
            retry=retry,
            **heartbeat.SOFTWARE_INFO,
        )

    _send._offline_ingestor = True  # type: ignore[attr-defined]
    heartbeat.Heart._send = _send

"""Process heartbeats in Redis: which worker processes are alive, and what each is doing.

Every worker process (the main process and each pool process) keeps one key,
``oi:proc:<host>:<pid>``, with a short TTL (``queue.heartbeat_ttl_s``), rewritten every
``queue.heartbeat_interval_s`` by a daemon thread. Its value is JSON:

* ``keys``: ``[key, step]`` of each step this process is running now;
* ``tags``: the broker deliveries this process holds (main process only: reserved, waiting for
  their ETA, or running), so that the reconciler knows which ``unacked`` entries are owned.

A file's lease names the process running its step (``oi:holder:<key>``, ``job_store``): the
lease lives as long as that process's heartbeat does. A killed process's key expires within
the TTL and its lease may then be taken over (``JobStore.begin_step``, ``claim_for_queue``).

A step's own beats ride on the ledger's round trips (issue 26 target 3): ``JobStore.begin_step``
writes the value naming ``[key, step]`` ahead of the lease script in its pipeline, and
``finish_step`` writes it without that entry after the step is marked done. The task's end
(:meth:`ProcessHeartbeat.running`) writes only when Redis does not hold the value already
(a retry, a skip, a refusal, an error: every outcome that did not finish the step).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from ..logs import get_logger

__all__ = [
    "PROC_PREFIX",
    "ProcessHeartbeat",
    "beat_along",
    "beating_as",
    "live_processes",
    "process_id",
    "running_entry",
]

log = get_logger("offline_ingestor.heartbeats")

#: One key per live worker process; ``job_store``'s lease script reads it too.
PROC_PREFIX = "oi:proc:"


def process_id(pid: int | None = None) -> str:
    """A process's name in heartbeats and leases: this one's by default (computed per call:
    pool processes fork), or that of process ``pid`` of this host."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


#: The heartbeat of each process (by pid: a forked pool process is not its parent).
_BEATING: dict[int, ProcessHeartbeat] = {}
#: A pipeline command that writes a beat: ``add(pipe)``.
QueueBeat = Callable[[Any], None]


def beating_as() -> str:
    """This process's id if it keeps a heartbeat, else "" (a lease it takes names no holder,
    so it is never taken over: ``ingest-now``, tests, tools keep the lease-TTL rule)."""
    heartbeat = _BEATING.get(os.getpid())
    return heartbeat.ident if heartbeat is not None else ""


def _no_beat(_: Any) -> None:
    """A process without a heartbeat has nothing to add to a pipeline."""


@contextlib.contextmanager
def beat_along(*, ended: tuple[str, str] | None = None) -> Iterator[QueueBeat]:
    """This process's beat as one more command of the caller's pipeline (see the module docstring).

    Yields ``add(pipe)``; the caller queues it where the order matters and runs the pipeline
    inside the block. ``ended``: the ``[key, step]`` the pipeline finishes, left out of the value.
    """
    heartbeat = _BEATING.get(os.getpid())
    if heartbeat is None:
        yield _no_beat
        return
    with heartbeat.sending(ended) as add:
        yield add


def running_entry(key: str, step: str) -> str:
    """How ``[key, step]`` reads inside a heartbeat value (the lease script searches for it)."""
    return json.dumps([key, step])


def live_processes(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every live process's heartbeat value, by process id."""
    names = list(client.scan_iter(f"{PROC_PREFIX}*", count=1000))
    if not names:
        return {}
    values = client.mget(names)
    alive: dict[str, dict[str, Any]] = {}
    for name, raw in zip(names, values, strict=True):
        if raw is None:
            continue  # expired between SCAN and MGET
        try:
            alive[str(name).removeprefix(PROC_PREFIX)] = json.loads(raw)
        except ValueError:
            alive[str(name).removeprefix(PROC_PREFIX)] = {}
    return alive


class ProcessHeartbeat:
    """This process's heartbeat key, its running keys, and the thread that renews it."""

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        *,
        interval_s: float,
        ttl_s: float,
        tags: Callable[[], list[str]] | None = None,
    ) -> None:
        self._client = client
        self.interval_s, self.ttl_s = interval_s, ttl_s
        self._tags = tags
        self._keys: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        # Held from computing a value until Redis has it: writes reach Redis in the order
        # they were computed, so ``_sent`` is what Redis holds (no older value lands later).
        self._send_lock = threading.Lock()
        self._sent: str | None = None
        self._stop = threading.Event()
        self._steady_since: float | None = None
        self.ident = process_id()
        self.name = f"{PROC_PREFIX}{self.ident}"

    def value(self, ended: tuple[str, str] | None = None) -> str:
        """The key's JSON value; ``ended``: one running ``[key, step]`` left out (it finished)."""
        with self._lock:
            keys = {pair for pair, count in self._keys.items() if pair != ended or count > 1}
        tags = self._tags() if self._tags is not None else []
        return json.dumps({"keys": [list(pair) for pair in sorted(keys)], "tags": tags})

    def beat(self, *, if_changed: bool = False) -> None:
        """Write the key now (raises Redis errors: callers decide); ``if_changed``: only if
        Redis does not hold this value already."""
        with self._send_lock:
            value = self.value()
            if if_changed and value == self._sent:
                return
            try:
                self._client().set(self.name, value, px=int(self.ttl_s * 1000))
            except BaseException:
                self._failed()
                raise
            self._delivered(value)

    @contextlib.contextmanager
    def sending(self, ended: tuple[str, str] | None = None) -> Iterator[QueueBeat]:
        """Yield ``add(pipe)`` queueing this beat in a pipeline the caller runs inside the block."""
        with self._send_lock:
            value = self.value(ended)
            try:
                yield lambda pipe: pipe.set(self.name, value, px=int(self.ttl_s * 1000))
            except BaseException:
                self._failed()  # whether Redis got the value is unknown: the next beat writes
                raise
            self._delivered(value)

    def _delivered(self, value: str) -> None:
        self._sent = value
        if self._steady_since is None:
            self._steady_since = time.monotonic()

    def _failed(self) -> None:
        self._sent = None
        self._steady_since = None

    def steady_for(self) -> float:
        """Seconds this process's beats have been reaching Redis without a failure.

        After Redis refused writes (OOM), restarted or failed over, every heartbeat may have
        expired although the workers live: nobody may be judged dead until all have had a
        full TTL to beat again (the reconciler waits for that).
        """
        return 0.0 if self._steady_since is None else time.monotonic() - self._steady_since

    @contextlib.contextmanager
    def running(self, key: str, step: str) -> Iterator[None]:
        """Note that this process runs ``step`` of ``key``; Redis learns it from the step's
        ``begin_step``, in the round trip that takes the lease, ahead of the lease script.

        Per step, not per file: the next step is published from inside this one and may
        begin elsewhere before this process has said it is done.
        """
        key_step = (key, step)
        with self._lock:
            self._keys[key_step] = self._keys.get(key_step, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._keys.get(key_step, 1) - 1
                if left:
                    self._keys[key_step] = left
                else:
                    self._keys.pop(key_step, None)
            # A finished step's ``finish_step`` wrote this value already. A failed write is
            # corrected by the next beat; the key only says "alive" meanwhile.
            with contextlib.suppress(redis.RedisError, OSError):
                self.beat(if_changed=True)

    def start(self) -> None:
        """Beat every ``interval_s`` on a daemon thread until the process ends."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.beat()
                except (redis.RedisError, OSError) as exc:
                    # Redis down or full: the key may expire; leases then look free only to
                    # whoever can reach Redis, and they check again under the lease script.
                    log.warning("heartbeat.failed", process=self.ident, error=str(exc))
                self._stop.wait(self.interval_s)

        _BEATING[os.getpid()] = self
        threading.Thread(target=loop, name="redis-heartbeat", daemon=True).start()

    def bury(self, pid: int) -> None:
        """Delete the heartbeat of a process of this host that is known dead (a pool process
        the main process saw exit): its leases are free at once, not after the TTL, so the
        step Celery redelivers right away is not refused as a copy of a running one."""
        with contextlib.suppress(redis.RedisError, OSError):
            self._client().delete(f"{PROC_PREFIX}{process_id(pid)}")

    def stop(self) -> None:
        """Stop beating and delete the key (a clean exit frees this process's leases at once)."""
        self._stop.set()
        _BEATING.pop(os.getpid(), None)
        with contextlib.suppress(redis.RedisError, OSError):
            self._client().delete(f"{PROC_PREFIX}{self.ident}")

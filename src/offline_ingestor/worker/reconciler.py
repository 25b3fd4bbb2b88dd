"""The reconciler: no file stays queued or running without something that will move it.

One worker at a time (elected: ``oi:reconciler``, ``SET NX PX`` renewed each pass) runs a
pass every ``queue.reconcile_interval_s``:

1. **Dead workers' deliveries.** An entry of kombu's ``unacked`` hash that no live worker
   process holds (``queue/heartbeats.py``: each main process lists its delivery tags) and that
   is older than ``queue.heartbeat_ttl_s`` is put back on its queue now, not after
   ``queue.visibility_timeout_s`` (hours). Its file's lease is the same chain's, so the
   redelivered step passes the lease once the dead holder's heartbeat is gone.
2. **Stuck files.** A record ``queued`` or ``running`` (from the index ``oi:unfinished``, kept by
   ``queue/job_store.py``: a pass costs O(unfinished files), not O(all records); the first pass
   of a process adds records written before the index) whose key has no message in a queue nor in
   ``unacked``, and that no live process is running, seen so on two passes in a row and not
   updated for ``heartbeat_ttl_s`` (the grace covers a retry's message in transit: a worker
   has popped it, not yet put it in ``unacked``, and acked its previous copy; every retry and
   next step is published after a record change, ``JobStore.end_step``/``finish_step``): its
   next step (the first not done) is published again
   through ``worker/chain.py`` under the lease's chain id, so that the same chain goes on. This
   covers ``celery purge``, revoked tasks and a next-step publish lost in a failover. After
   ``queue.max_resumes`` resumes the file fails with the reason instead of looping.

Neither action lets two chains write one file: the restored or republished message belongs
to the chain that holds the lease; a different chain is refused by the lease script while the
holder lives, and the orphaned-write rules (``ingest/executor.py``) still apply to a write
step run again.
"""

from __future__ import annotations

import base64
import calendar
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery

from ..config import Config
from ..ingest.job import Job
from ..ingest.steps import STEPS
from ..logs import get_logger
from ..queue.broker_layout import queue_keys
from ..queue.heartbeats import live_processes, process_id
from ..queue.job_store import PREFIX, JobStore, Record
from .chain import step_signature

__all__ = ["Reconciler", "message_key", "record_age_s", "unmoved"]

log = get_logger("offline_ingestor.reconciler")

LOCK_KEY = f"{PREFIX}reconciler"
#: The last pass's oldest unfinished file (epoch of its enqueue) and count of stuck files.
SUMMARY_KEY = f"{PREFIX}liveness"
#: kombu's default names (``kombu.transport.redis.Channel``; not overridden in worker/settings.py).
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
#: Renew the election lock only while we still hold it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


def message_key(payload: dict[str, Any]) -> str | None:
    """The file key a kombu message of a step task carries (``{key, file}`` is its first arg)."""
    try:
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        key = args[0].get("key") if args and isinstance(args[0], dict) else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return str(key) if key else None


def record_age_s(record: Record, now: float | None = None, *, field: str = "updated_at") -> float:
    """Seconds since the record's ``field`` (by default its last change; else ``enqueued_at``)."""
    stamp = record.fields.get(field) or record.fields.get("enqueued_at") or ""
    try:
        # The milliseconds too: whole seconds made a change up to 1 s older than it was,
        # a second of the grace (one TTL) gone.
        fraction = float("0" + stamp[19:23]) if stamp[19:20] == "." else 0.0
        then = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + fraction
    except ValueError:
        return 0.0
    return max(0.0, (now or time.time()) - then)


def unmoved(record: Record, alive: set[str], grace_s: float, now: float) -> bool:
    """No sign of life: no message, no live process on it, and no change for ``grace_s``."""
    return record.key not in alive and record_age_s(record, now) >= grace_s


class Reconciler:
    """One pass at a time; :meth:`start` runs passes on a daemon thread while elected."""

    def __init__(
        self, app: Celery, config: Config, store: Callable[[], JobStore], steady_for: Callable[[], float]
    ) -> None:
        self.app, self.config, self._store, self._steady_for = app, config, store, steady_for
        self.me = process_id()
        self._suspects: set[str] = set()
        self._indexed = False
        self._stop = threading.Event()

    @property
    def redis(self) -> redis.Redis:
        return self._store().redis

    def elected(self) -> bool:
        """Hold (take or renew) the one reconciler lock for three intervals."""
        ttl_ms = int(self.config.queue.reconcile_interval_s * 3000)
        return bool(self.redis.eval(_RENEW, 1, LOCK_KEY, self.me, ttl_ms))

    def steady(self) -> bool:
        """Whether heartbeats can be trusted: ours has reached Redis for a TTL and an interval."""
        queue = self.config.queue
        return self._steady_for() > queue.heartbeat_ttl_s + queue.heartbeat_interval_s

    def run_once(self) -> dict[str, int]:
        """One pass (the caller holds the lock); counts of what it did."""
        if not self.steady():
            # Redis refused writes or came back lately: live workers' heartbeats may have
            # expired meanwhile. Judging them dead now would run their steps twice.
            self._suspects = set()
            return {"restored": 0, "resumed": 0, "suspects": 0}
        live = live_processes(self.redis)
        restored = self._restore_dead_deliveries(live)
        alive = self._signs_of_life(live)
        resumed = 0
        suspects: set[str] = set()
        grace_s = self.config.queue.heartbeat_ttl_s
        now = time.time()
        oldest, stuck = now, 0
        store = self._store()
        if not self._indexed:
            store.index_unfinished()  # once per process: records from before the index
            self._indexed = True
        for record in store.unfinished():
            enqueued = now - record_age_s(record, now, field="enqueued_at")
            oldest = min(oldest, enqueued)
            stuck += now - enqueued > self.config.queue.stuck_after_s
            if not unmoved(record, alive, grace_s, now):
                continue
            if record.key not in self._suspects:
                suspects.add(record.key)  # once more next pass: a message may be between lists
                continue
            resumed += self._resume(record)
        self._suspects = suspects
        # For the metrics scrape (worker/metrics_server.py): read by every worker, written here.
        summary = {"oldest_unfinished": f"{oldest:.3f}", "stuck": str(stuck), "at": f"{now:.3f}"}
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(SUMMARY_KEY, mapping=summary)  # type: ignore[arg-type]
        pipe.pexpire(SUMMARY_KEY, int(self.config.queue.reconcile_interval_s * 5000))
        pipe.execute()
        return {"restored": restored, "resumed": resumed, "suspects": len(suspects)}

    def unmoved_keys(self) -> set[str]:
        """The unfinished files this instant's look finds unmoved (what a pass suspects; no action)."""
        alive, now = self._signs_of_life(live_processes(self.redis)), time.time()
        grace_s = self.config.queue.heartbeat_ttl_s
        return {record.key for record in self._store().unfinished() if unmoved(record, alive, grace_s, now)}

    def _signs_of_life(self, live: dict[str, dict[str, Any]]) -> set[str]:
        """Keys with a message (on a queue or in ``unacked``) or a step a live process runs now."""
        running = {entry[0] for beat in live.values() for entry in beat.get("keys", []) if entry}
        return self._message_keys() | running

    def _restore_dead_deliveries(self, live: dict[str, dict[str, Any]]) -> int:
        held = {str(tag) for beat in live.values() for tag in beat.get("tags", [])}
        cutoff = time.time() - self.config.queue.heartbeat_ttl_s
        orphans = [
            tag.decode() if isinstance(tag, bytes) else str(tag)
            for tag in self.redis.zrangebyscore(UNACKED_INDEX, "-inf", cutoff)
        ]
        orphans = [tag for tag in orphans if tag not in held]
        if not orphans:
            return 0
        with self.app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            for tag in orphans:
                # kombu's own restore (a transaction: off the unacked hash, back on its queue),
                # at the end BRPOP takes next (``leftmost`` would LPUSH it behind the backlog).
                qos.restore_by_tag(tag, leftmost=False)
                log.warning("reconcile.restored", delivery_tag=tag, reason="no live worker holds it")
        return len(orphans)

    def _message_keys(self) -> set[str]:
        """Keys with a message on a queue of ours or in ``unacked``."""
        names = [self.config.queue.queue_name] + (
            [self.config.queue.io_queue_name] if self.config.queue.io_queue_name else []
        )
        payloads: list[Any] = []
        for name in names:
            for list_key in queue_keys(name):
                payloads.extend(self.redis.lrange(list_key, 0, -1))
        payloads.extend(json.loads(raw)[0] for raw in self.redis.hvals(UNACKED))
        keys: set[str] = set()
        for payload in payloads:
            message = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
            key = message_key(message) if isinstance(message, dict) else None
            if key:
                keys.add(key)
        return keys

    def _resume(self, record: Record) -> int:
        store = self._store()
        key, file = record.key, record.fields.get("file", "")
        step = next((name for name in STEPS if not record.step_done(name)), None)
        if step is None:
            return 0  # the last step marks done with its step flag: nothing to publish
        chain, _, _ = store.lease(key)
        resumes = int(record.fields.get("resumes", "0") or 0) + 1
        reason = f"no message and no live process for {record.state} file"
        doc_lost = step != STEPS[0] and not store.redis.exists(f"{PREFIX}doc:{key}")
        if resumes > self.config.queue.max_resumes or doc_lost:
            why = "its job document expired" if doc_lost else f"resumed {resumes - 1} times"
            failure = {
                "file": file,
                "step": step,
                "error_class": "Stuck",
                "message": f"{reason} (purged, revoked, lost publish); {why}: enqueue --force to start over",
                "attempts": resumes,
            }
            store.fail_step(key, step, chain, failure)
            log.error("reconcile.failed", key=key, file=file, step=step, reason=failure["message"])
            return 0
        store.update(key, resumes=resumes)
        ref: Job = {"key": key, "file": file}
        if step == STEPS[0] and record.fields.get("job_id"):
            ref["job_id"] = record.fields["job_id"]
        signature = step_signature(self.app, step, ref, self.config)
        # The lease's chain goes on (same owner); without a lease a new chain starts.
        signature.apply_async(**({"root_id": chain, "parent_id": chain} if chain else {}))
        log.warning("reconcile.resumed", key=key, file=file, step=step, chain=chain or None,
                    resumes=resumes, reason=reason)  # fmt: skip
        return 1

    def start(self) -> None:
        """Run passes on a daemon thread (only while elected) until the process ends."""

        def loop() -> None:
            while not self._stop.wait(self.config.queue.reconcile_interval_s):
                try:
                    if self.elected():
                        done = self.run_once()
                        if any(done.values()):
                            log.info("reconcile.pass", **done)
                except Exception as exc:  # Redis down or full: the next pass tries again
                    log.warning("reconcile.skipped", error=repr(exc))

        threading.Thread(target=loop, name="reconciler", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

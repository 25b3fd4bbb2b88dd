"""Job records in Redis: per-file state, leases, intermediate documents, failed registry.

Keys (``oi:`` prefix, all JSON-able, no secrets):

* ``oi:job:{key}``   hash: file, job_id, state (queued/running/done/failed), ``step:<name>``
  = done, pid, attempts, last_error, timestamps, ``claim``/``published`` (the producer's
  request id and whether its chain was published). Expires ``state_ttl_s`` after last change.
* ``oi:doc:{key}``   the job document the steps pass along (JSON), same TTL.
* ``oi:lease:{key}`` the chain that may work on the key (``SET NX EX``).
* ``oi:runs:{key}:{step}`` executions of a step, to cap redeliveries after worker loss.
* ``oi:failed``      hash key -> JSON failure record (file, step, error, attempts, time).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis

from .config import Queue
from .job import Job

__all__ = ["ACTIVE_STATES", "JobStore", "Record", "StepStart"]

ACTIVE_STATES = ("queued", "running", "done")
PREFIX = "oi:"
#: release_claim: delete record and document only if the record is still this claim's.
_RELEASE_CLAIM = """
if redis.call('HGET', KEYS[1], 'claim') == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""


@dataclass(frozen=True)
class Record:
    """What the store knows about one key."""

    key: str
    fields: dict[str, str]

    @property
    def state(self) -> str:
        return self.fields.get("state", "")

    def step_done(self, step: str) -> bool:
        return self.fields.get(f"step:{step}") == "done"


@dataclass(frozen=True)
class StepStart:
    """What a step task learns before running its step (see :meth:`JobStore.begin_step`)."""

    runs: int
    leased: bool
    record: Record | None
    doc: Job | None


class JobStore:
    """Thin, typed access to the keys above; every method is one or two round trips."""

    def __init__(self, client: redis.Redis, state_ttl_s: int = 7 * 86400, lease_ttl_s: int = 11400) -> None:
        self.redis = client
        self.state_ttl_s = state_ttl_s
        self.lease_ttl_s = lease_ttl_s

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> JobStore:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True)
        return cls(client, **kwargs)

    @classmethod
    def for_queue(cls, queue: Queue) -> JobStore:
        """The store of ``queue``'s Redis: one URL, or the master behind Redis Sentinel."""
        from .redis_conn import redis_client

        return cls(redis_client(queue), state_ttl_s=queue.state_ttl_s, lease_ttl_s=queue.lease_ttl_s)

    # -- records ------------------------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        fields = cast(dict[str, str], self.redis.hgetall(f"{PREFIX}job:{key}"))
        return Record(key, fields) if fields else None

    def update(self, key: str, **fields: Any) -> None:
        name = f"{PREFIX}job:{key}"
        values = {field: _text(value) for field, value in fields.items()}
        values["updated_at"] = _now()
        pipe = self.redis.pipeline()
        pipe.hset(name, mapping=cast(Any, values))  # redis-py types keys as a union Mapping
        pipe.expire(name, self.state_ttl_s)
        pipe.execute()

    def claim_for_queue(
        self, job: Job, *, force: bool = False, claim: str = "", with_doc: bool = False
    ) -> tuple[bool, str]:
        """Mark a key queued unless it is queued, running or done; (claimed, previous state).

        A WATCH transaction makes two concurrent enqueues of one file claim it once. With
        ``with_doc`` the job document is written in the same MULTI, so a Redis that refuses
        writes (OOM, read-only) leaves neither. ``claim`` tags the record with the producer's
        request id: a request retried from the spool re-takes its own claim when its chain
        was never published (the publish or its roll-back failed), and is a no-op once it was.
        """
        name = f"{PREFIX}job:{job['key']}"
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(name)  # type: ignore[no-untyped-call]
                    previous, owner, published = (
                        str(value or "") for value in pipe.hmget(name, "state", "claim", "published")
                    )
                    ours = bool(claim) and owner == claim
                    if ours and (published or previous in ("running", "done")):
                        pipe.unwatch()
                        return False, previous
                    if previous in ACTIVE_STATES and not force and not ours:
                        pipe.unwatch()
                        return False, previous
                    pipe.multi()
                    pipe.delete(name)
                    pipe.hset(
                        name,
                        mapping={
                            "state": "queued",
                            "file": job["file"],
                            "job_id": job.get("job_id") or "",
                            "attempts": "0",
                            "claim": claim,
                            "enqueued_at": _now(),
                            "updated_at": _now(),
                        },
                    )
                    pipe.expire(name, self.state_ttl_s)
                    if with_doc:
                        pipe.set(f"{PREFIX}doc:{job['key']}", json.dumps(job), ex=self.state_ttl_s)
                    pipe.hdel(f"{PREFIX}failed", job["key"])
                    pipe.execute()
                    return True, "" if ours else previous
                except redis.WatchError:
                    continue

    def mark_published(self, key: str, claim: str, *, replicas: int = 0, timeout_ms: int = 1000) -> int:
        """Note that the chain of ``claim`` is on the queue (see :meth:`claim_for_queue`).

        With ``replicas``, also WAIT until that many replicas hold every write made so far
        (this connection's HSET comes after the chain's publish on the master): a request is
        reported queued only once a failover cannot lose it. Returns the replicas that did.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(f"{PREFIX}job:{key}", "published", claim or "1")
        if replicas:
            pipe.wait(replicas, timeout_ms)
        answers = pipe.execute()
        return int(answers[1]) if replicas else 0

    def release_claim(self, key: str, claim: str) -> bool:
        """Undo a claim whose chain could not be published: record and document go.

        Only the claim's own record is removed (another producer may have forced a newer
        one). A script, not WATCH/MULTI: a Redis at maxmemory refuses every command queued in
        a MULTI, DEL included, but runs a script's DEL (DEL frees memory).
        """
        removed = self.redis.eval(_RELEASE_CLAIM, 2, f"{PREFIX}job:{key}", f"{PREFIX}doc:{key}", claim)
        return bool(removed)

    # -- documents ----------------------------------------------------------------------------

    def save_doc(self, job: Job) -> None:
        self.redis.set(f"{PREFIX}doc:{job['key']}", json.dumps(job), ex=self.state_ttl_s)

    def load_doc(self, key: str) -> Job | None:
        raw = self.redis.get(f"{PREFIX}doc:{key}")
        return json.loads(raw) if raw else None

    # -- leases -------------------------------------------------------------------------------

    def acquire_lease(self, key: str, owner: str) -> bool:
        """Take the key for ``owner`` (a chain id), or confirm and refresh its hold."""
        name = f"{PREFIX}lease:{key}"
        if self.redis.set(name, owner, nx=True, ex=self.lease_ttl_s):
            return True
        if self.redis.get(name) == owner:
            self.redis.expire(name, self.lease_ttl_s)
            return True
        return False

    def release_lease(self, key: str, owner: str) -> None:
        name = f"{PREFIX}lease:{key}"
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(name)  # type: ignore[no-untyped-call]
                if pipe.get(name) == owner:
                    pipe.multi()
                    pipe.delete(name)
                    pipe.execute()
                else:
                    pipe.unwatch()
            except redis.WatchError:
                pass  # someone else changed it: not ours to delete any more

    # -- redelivery cap -----------------------------------------------------------------------

    def count_run(self, key: str, step: str) -> int:
        name = f"{PREFIX}runs:{key}:{step}"
        pipe = self.redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, self.state_ttl_s)
        return int(pipe.execute()[0])

    def clear_runs(self, key: str, step: str) -> None:
        self.redis.delete(f"{PREFIX}runs:{key}:{step}")

    # -- one round trip per task phase (the worker's hot path) ---------------------------------

    def begin_step(self, key: str, step: str, owner: str) -> StepStart:
        """``count_run`` + ``acquire_lease`` + ``get`` + ``load_doc`` in one pipeline.

        A step task used to make five or six round trips before its step ran; with ~1 ms
        of client and server CPU each, that was a fifth of a small file's cost on a 2-core
        host (bench/RESULTS.md). Same effects, same order; a chain that already holds the
        lease refreshes its expiry with one more call.
        """
        lease = f"{PREFIX}lease:{key}"
        runs = f"{PREFIX}runs:{key}:{step}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(runs)
        pipe.expire(runs, self.state_ttl_s)
        pipe.set(lease, owner, nx=True, ex=self.lease_ttl_s)
        pipe.get(lease)
        pipe.hgetall(f"{PREFIX}job:{key}")
        pipe.get(f"{PREFIX}doc:{key}")
        count, _, taken, holder, fields, raw = pipe.execute()
        leased = bool(taken) or holder == owner
        if leased and not taken:
            self.redis.expire(lease, self.lease_ttl_s)
        return StepStart(
            runs=int(count),
            leased=leased,
            record=Record(key, fields) if fields else None,
            doc=json.loads(raw) if raw else None,
        )

    def finish_step(self, job: Job, step: str, **fields: Any) -> None:
        """``save_doc`` + ``update(step:<step>=done, **fields)`` + ``clear_runs``, one round trip."""
        key = job["key"]
        name = f"{PREFIX}job:{key}"
        values: dict[Any, Any] = {field: _text(value) for field, value in fields.items()}  # redis-py stubs
        values[f"step:{step}"] = "done"
        values["updated_at"] = _now()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{PREFIX}doc:{key}", json.dumps(job), ex=self.state_ttl_s)
        pipe.hset(name, mapping=values)
        pipe.expire(name, self.state_ttl_s)
        pipe.delete(f"{PREFIX}runs:{key}:{step}")
        pipe.execute()

    # -- failed registry ----------------------------------------------------------------------

    def record_failure(self, key: str, failure: dict[str, Any]) -> None:
        entry = {**failure, "key": key, "failed_at": _now()}
        pipe = self.redis.pipeline()
        pipe.hset(f"{PREFIX}failed", key, json.dumps(entry))
        pipe.hset(
            f"{PREFIX}job:{key}",
            mapping={
                "state": "failed",
                "last_error": _text(failure.get("message", "")),
                "updated_at": _now(),
            },
        )
        pipe.expire(f"{PREFIX}job:{key}", self.state_ttl_s)
        pipe.execute()

    def failures(self) -> list[dict[str, Any]]:
        entries = [json.loads(raw) for raw in self.redis.hgetall(f"{PREFIX}failed").values()]
        return sorted(entries, key=lambda entry: entry.get("failed_at", ""))

    def failure(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.hget(f"{PREFIX}failed", key)
        return json.loads(raw) if raw else None

    def find_key(self, file: str) -> str | None:
        """The key of the newest record for a file path (``status FILE``)."""
        newest: tuple[str, str] | None = None
        for name in self.redis.scan_iter(f"{PREFIX}job:*", count=500):
            path, updated = (str(value or "") for value in self.redis.hmget(name, "file", "updated_at"))
            if path == file and (newest is None or updated > newest[1]):
                newest = (str(name).removeprefix(f"{PREFIX}job:"), updated)
        return newest[0] if newest else None

    def counts(self) -> dict[str, int]:
        """How many records are in each state (a scan: for operators, not hot paths)."""
        totals: dict[str, int] = {}
        for name in self.redis.scan_iter(f"{PREFIX}job:*", count=1000):
            state = str(self.redis.hget(name, "state") or "?")
            totals[state] = totals.get(state, 0) + 1
        return totals


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

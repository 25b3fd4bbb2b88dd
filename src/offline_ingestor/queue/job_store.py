"""Job records in Redis: per-file state, leases, intermediate documents, failed registry.

Keys (``oi:`` prefix, all JSON-able, no secrets):

* ``oi:job:{key}``   hash: file, job_id, state (queued/running/done/failed), ``step:<name>``
  = done, pid, attempts, last_error, timestamps, ``claim``/``published`` (the producer's
  request id, and ``1`` once its chain was published). Expires ``state_ttl_s`` after last change.
* ``oi:doc:{key}``   the job document the steps pass along (JSON), same TTL.
* ``oi:lease:{key}`` the chain that may work on the key (``SET NX EX``).
* ``oi:holder:{key}`` the process (``queue/heartbeats.py``) that last began a step under the
  lease: the lease may be taken over by another chain once that process's heartbeat is gone.
* ``oi:runs:{key}:{step}`` hash: ``runs`` (executions of the step, by any copy), ``deaths``
  (executions whose process died running them: the redelivery cap) and ``run:<id>`` = the
  process of each execution begun and not yet ended (``begin_step``/``end_step``).
* ``oi:failed``      hash key -> JSON failure record (file, step, error, attempts, time).
* ``oi:unfinished``  set of the keys whose record is queued or running, kept where a record's
  state changes (below): the reconciler's pass reads these, not every record.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import redis

from ..config import Config, QueueOptions
from ..ingest.job import Job, ingest_key
from ..ingest.ledger import Record, StepStart
from ..logs import get_logger

__all__ = [
    "ACTIVE_STATES",
    "FAILED_KEY",
    "PREFIX",
    "UNFINISHED_KEY",
    "JobStore",
    "Record",
    "StepStart",
    "job_key",
]

log = get_logger("offline_ingestor.job_store")

ACTIVE_STATES = ("queued", "running", "done")
#: Record fields a forced claim keeps: the orphaned-write rules (``ingest/executor.py``) must
#: still see a dead process's last write and its sender.
_WRITE_FIELDS = ("write:", "writer:", "write_until:")
PREFIX = "oi:"
#: The failed registry (a hash); the metrics scrape reads its length.
FAILED_KEY = f"{PREFIX}failed"
#: Keys of records queued or running (a set; see the module docstring).
UNFINISHED_KEY = f"{PREFIX}unfinished"
UNFINISHED_STATES = ("queued", "running")
#: release_claim: delete record and document only if the record is still this claim's.
_RELEASE_CLAIM = """
if redis.call('HGET', KEYS[1], 'claim') == ARGV[1] then
  redis.call('SREM', KEYS[3], ARGV[2])
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""

#: release_lease: delete the lease and its holder only if the lease is still this chain's.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""


#: unfinished(): drop index members whose record is no longer queued or running (finished, or
#: expired) *now*: a claim between the read and the removal keeps its member. Record keys are
#: built in the script (as the lease script does): one Redis or Sentinel, not Redis Cluster.
_PRUNE = """
local dropped = 0
for _, key in ipairs(ARGV) do
  local state = redis.call('HGET', KEYS[2] .. key, 'state')
  if state ~= 'queued' and state ~= 'running' then
    dropped = dropped + redis.call('SREM', KEYS[1], key)
  end
end
return dropped
"""


#: note_write: one writer per step at a time. While another writer's last write may still
#: reach SciCat (before the deadline *that writer* noted: its own timeout), answer the seconds
#: left and record nothing.
_NOTE_WRITE = """
local holder = redis.call('HGET', KEYS[1], 'writer:' .. ARGV[1])
local deadline = tonumber(redis.call('HGET', KEYS[1], 'write_until:' .. ARGV[1]) or '0')
local at, window = tonumber(ARGV[3]), tonumber(ARGV[4])
if holder and holder ~= ARGV[2] and at < deadline then
  return tostring(deadline - at)
end
redis.call('HSET', KEYS[1], 'writer:' .. ARGV[1], ARGV[2], 'write:' .. ARGV[1], ARGV[3],
           'write_until:' .. ARGV[1], tostring(at + window))
return '0'
"""


#: finish_step's last step: a finished record keeps what ``status``, ``audit``, ``requeue``,
#: the reconciler, the claim and the write rules read (state, file, job_id, claim/published,
#: pid, schema_id, stamps, and ``write:``/``writer:``/``write_until:``: a copy of a write step
#: that passed its checks before the file finished must still be refused by ``note_write``),
#: not the per-step flags: ``Record.step_done`` is true for every step of a done record.
#: Matched by prefix, so a step added later is covered too (issue 26 target 4).
_DROP_FINISHED = """
local drop = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if name:sub(1, 5) == 'step:' then drop[#drop + 1] = name end
end
if #drop > 0 then redis.call('HDEL', KEYS[1], unpack(drop)) end
return #drop
"""


#: begin_step's lease: take it if free; the same chain always may, unless another live process
#: is running this very step of this file now (a restored copy of a message whose first copy
#: still runs); another chain only once the holder's heartbeat key is gone (it died). A lease
#: without a holder (older release) waits for its TTL. The heartbeat key is read inside the
#: script (not in KEYS): fine for one Redis or Sentinel, not for Redis Cluster.
#: With the lease, the record says the step runs (state, step, attempts; the unfinished index)
#: unless the step or the file is done: a late copy skips it, and a done file stays done. One
#: script, so no copy finishing the step in between can be overwritten (it was a second round
#: trip after the executor's checks; issue 26 target 3).
_TAKE_LEASE = """
local lease, holder = redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])
local owner, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local answer = 'taken'
if lease then
  local beat = false
  if holder and holder ~= '' then beat = redis.call('GET', ARGV[4] .. holder) end
  if lease == owner then
    answer = 'ours'
    if holder ~= me and beat and string.find(beat, ARGV[5], 1, true) then return 'busy' end
  elseif holder and holder ~= '' and not beat then
    answer = 'took-over:' .. lease .. ':' .. holder
  else
    return 'refused'
  end
end
redis.call('SET', KEYS[1], owner, 'EX', ttl)
redis.call('SET', KEYS[2], me, 'EX', ttl)
local done = redis.call('HMGET', KEYS[3], 'step:' .. ARGV[6], 'state')
if done[1] ~= 'done' and done[2] ~= 'done' then
  redis.call('HSET', KEYS[3], 'state', 'running', 'step', ARGV[6], 'attempts', ARGV[7], 'updated_at', ARGV[8])
  redis.call('EXPIRE', KEYS[3], ARGV[9])
  redis.call('SADD', KEYS[4], ARGV[10])
end
return answer
"""


#: begin_step's count: every execution still open whose process's heartbeat is gone (or that
#: named none: a process without heartbeats, whose executions are one at a time) died running
#: the step; it is closed and counted in ``deaths``. An execution of another live copy, a retry
#: or a wait ended with end_step, or is still running: not a death. Then this one is opened.
#: A plain count (a release before deaths were told apart) counted executions: dropped.
_BEGIN_RUN = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end
local died = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name, holder = fields[i], fields[i + 1]
  if name:sub(1, 4) == 'run:' and (holder == '' or redis.call('EXISTS', ARGV[3] .. holder) == 0) then
    redis.call('HDEL', KEYS[1], name)
    died = died + 1
  end
end
local deaths = redis.call('HINCRBY', KEYS[1], 'deaths', died)
local runs = redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('HSET', KEYS[1], 'run:' .. ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {runs, deaths}
"""

#: forgive_run: close one open execution of a process (stopped on purpose) and uncount it.
_FORGIVE_RUN = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i]:sub(1, 4) == 'run:' and fields[i + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[1], fields[i])
    break
  end
end
if redis.call('HINCRBY', KEYS[1], 'runs', -1) <= 0 then redis.call('HSET', KEYS[1], 'runs', 0) end
return 1
"""


#: end_step's stamp: the record's last change, only on a record that exists (no stub record).
_STAMP = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def job_key(key: str) -> str:
    """The Redis key of a file's record (the metrics scrape reads its enqueue time)."""
    return f"{PREFIX}job:{key}"


class JobStore:
    """Thin, typed access to the keys above; every method is one or two round trips."""

    def __init__(self, client: redis.Redis, state_ttl_s: int = 7 * 86400, lease_ttl_s: int = 11400) -> None:
        self.redis = client
        self.state_ttl_s = state_ttl_s
        self.lease_ttl_s = lease_ttl_s

    @classmethod
    def for_config(cls, config: Config) -> JobStore:
        """The store of the Redis ``queue.broker_url`` (or ``queue.sentinel``) names, with its TTLs."""
        return cls.for_queue(config.queue)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> JobStore:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, decode_responses=True)
        return cls(client, **kwargs)

    @classmethod
    def for_queue(cls, queue: QueueOptions) -> JobStore:
        """The store of ``queue``'s Redis: one URL, or the master behind Redis Sentinel."""
        from .connection import redis_client

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
        if "state" in fields:
            _index(pipe, key, values["state"])
        pipe.execute()

    def claim_for_queue(self, job: Job, *, force: bool = False, claim: str = "") -> tuple[bool, str]:
        """Mark a key queued unless it is queued, running or done; (claimed, previous state).

        A WATCH transaction makes two concurrent enqueues of one file claim it once. No job
        document is written: the first step starts from its message (``chain.build_chain``),
        and a queued file costs Redis only this record and that message (bench/RESULTS.md,
        Redis memory per queued file). ``claim`` tags the record with the producer's
        request id: a request retried from the spool re-takes its own claim when its chain
        was never published (the publish or its roll-back failed), and is a no-op once it was.
        """
        name = f"{PREFIX}job:{job['key']}"
        lease, holder_name = f"{PREFIX}lease:{job['key']}", f"{PREFIX}holder:{job['key']}"
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(name, lease, holder_name)  # type: ignore[no-untyped-call]
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
                    chain, holder, alive = self.lease(job["key"]) if force else ("", "", None)
                    if chain and alive:
                        # Its holder is alive: a second chain would be dropped at its first
                        # step (chain.duplicate) and leave "queued" with nothing queued.
                        pipe.unwatch()
                        return False, f"running (held by {holder})"
                    # A requeue of a file that failed at post-job keeps its done steps too: the
                    # chain skips them (document kept) and retries only that step.
                    keep = _WRITE_FIELDS + (("step:",) if job.get("keep_done_steps") else ())
                    kept = {
                        field: value
                        for field, value in cast(dict[str, str], pipe.hgetall(name)).items()
                        if field.startswith(keep)
                    }
                    pipe.multi()
                    pipe.delete(name)
                    if chain and alive is False:
                        # The holder died (its heartbeat expired): the new chain takes over.
                        pipe.delete(lease, holder_name)
                        log.warning(
                            "lease.taken_over",
                            key=job["key"],
                            file=job["file"],
                            previous_chain=chain,
                            dead_holder=holder,
                            reason="forced claim; the holder's heartbeat is gone",
                        )
                    if kept:
                        pipe.hset(name, mapping=cast(Any, kept))
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
                    pipe.sadd(UNFINISHED_KEY, job["key"])
                    pipe.hdel(FAILED_KEY, job["key"])
                    pipe.execute()
                    return True, "" if ours else previous
                except redis.WatchError:
                    continue

    def mark_published(self, key: str, *, replicas: int = 0, timeout_ms: int = 1000) -> int:
        """Note that the claim's chain is on the queue (see :meth:`claim_for_queue`).

        With ``replicas``, also WAIT until that many replicas hold every write made so far
        (this connection's HSET comes after the chain's publish on the master): a request is
        reported queued only once a failover cannot lose it. Returns the replicas that did.
        """
        pipe = self.redis.pipeline(transaction=False)
        # A flag: the record's ``claim`` already names the request (repeating its 32 characters
        # here cost 40-64 B per queued file, bench/RESULTS.md).
        pipe.hset(f"{PREFIX}job:{key}", "published", "1")
        if replicas:
            pipe.wait(replicas, timeout_ms)
        answers = pipe.execute()
        return int(answers[1]) if replicas else 0

    def release_claim(self, key: str, claim: str) -> bool:
        """Undo a claim whose chain could not be published: its record goes (and a document).

        Only the claim's own record is removed (another producer may have forced a newer
        one). A script, not WATCH/MULTI: a Redis at maxmemory refuses every command queued in
        a MULTI, DEL included, but runs a script's DEL (DEL frees memory).
        """
        names = (f"{PREFIX}job:{key}", f"{PREFIX}doc:{key}", UNFINISHED_KEY)
        removed = self.redis.eval(_RELEASE_CLAIM, 3, *names, claim, key)
        return bool(removed)

    # -- documents ----------------------------------------------------------------------------

    def save_doc(self, job: Job) -> None:
        self.redis.set(f"{PREFIX}doc:{job['key']}", json.dumps(job), ex=self.state_ttl_s)

    # -- leases -------------------------------------------------------------------------------

    def _lease_args(self, key: str, step: str, owner: str, attempt: int) -> tuple[Any, ...]:
        from .heartbeats import PROC_PREFIX, beating_as, running_entry

        names = (f"{PREFIX}lease:{key}", f"{PREFIX}holder:{key}", f"{PREFIX}job:{key}", UNFINISHED_KEY)
        marks = (step, attempt + 1, _now(), self.state_ttl_s, key)
        entry = running_entry(key, step)
        return (_TAKE_LEASE, 4, *names, owner, beating_as(), self.lease_ttl_s, PROC_PREFIX, entry, *marks)

    def lease(self, key: str) -> tuple[str, str, bool | None]:
        """(chain, holder process, holder alive?) of a key's lease; alive is None without a holder."""
        from .heartbeats import PROC_PREFIX

        owner, holder = (
            str(v or "") for v in self.redis.mget(f"{PREFIX}lease:{key}", f"{PREFIX}holder:{key}")
        )
        if not holder:
            return owner, "", None
        return owner, holder, bool(self.redis.exists(f"{PROC_PREFIX}{holder}"))

    def release_lease(self, key: str, owner: str) -> None:
        """Give the lease (and its holder key) up if ``owner`` still holds it: one script, one
        round trip (was WATCH, GET, MULTI/DEL/EXEC: three; issue 26 target 3), and it runs at
        maxmemory too (a DEL frees memory; a MULTI is refused whole)."""
        self._queue_release(self.redis, key, owner)

    @staticmethod
    def _queue_release(target: Any, key: str, owner: str) -> None:
        """The release script on ``target``: the client (a round trip) or a caller's pipeline."""
        target.eval(_RELEASE_LEASE, 2, f"{PREFIX}lease:{key}", f"{PREFIX}holder:{key}", owner)

    # -- redelivery cap -----------------------------------------------------------------------

    def forgive_run(self, key: str, step: str, process: str = "") -> None:
        """Uncount one execution of ``step`` by ``process``: it was stopped on purpose, not lost
        (a bounded stop), so its process's end is no death."""
        self.redis.eval(_FORGIVE_RUN, 1, f"{PREFIX}runs:{key}:{step}", process)

    def clear_runs(self, key: str, step: str) -> None:
        self.redis.delete(f"{PREFIX}runs:{key}:{step}")

    # -- one round trip per task phase (the worker's hot path) ---------------------------------

    def begin_step(self, key: str, step: str, owner: str, attempt: int = 0) -> StepStart:
        """This process's heartbeat, the execution counted, the lease taken or confirmed (and the
        record marked running: ``_TAKE_LEASE``), record and document read: one round trip.

        One pipeline: with ~0.3 ms of client CPU per round trip, separate calls were a fifth
        of a small file's cost on a 2-core host (bench/RESULTS.md). The beat goes first: the
        heartbeat names the step before the lease names this process as its holder, so a leased
        running file always has a live holder that says it runs it. The record is read after
        the lease: a copy that finished the step meanwhile is seen done.
        """
        from .heartbeats import PROC_PREFIX, beat_along, beating_as

        run_id = secrets.token_hex(6)
        runs = f"{PREFIX}runs:{key}:{step}"
        with beat_along() as beat:
            pipe = self.redis.pipeline(transaction=False)
            beat(pipe)
            pipe.eval(_BEGIN_RUN, 1, runs, run_id, beating_as(), PROC_PREFIX, self.state_ttl_s)
            pipe.eval(*self._lease_args(key, step, owner, attempt))
            pipe.hgetall(f"{PREFIX}job:{key}")
            pipe.get(f"{PREFIX}doc:{key}")
            (count, deaths), answer, fields, raw = pipe.execute()[-4:]
        leased = answer == "ours" or answer.startswith(("taken", "took-over"))
        if answer.startswith("took-over"):
            _, previous, holder = answer.split(":", 2)
            log.warning("lease.taken_over", key=key, step=step, previous_chain=previous,
                        dead_holder=holder, reason="the holder's heartbeat is gone")  # fmt: skip
        return StepStart(
            runs=int(count),
            leased=leased,
            record=Record(key, fields) if fields else None,
            doc=json.loads(raw) if raw else None,
            deaths=int(deaths),
            run_id=run_id,
        )

    def end_step(self, key: str, step: str, run_id: str, *, message_follows: bool) -> None:
        """See :meth:`StepLedger.end_step`; one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(f"{PREFIX}runs:{key}:{step}", f"run:{run_id}")
        if message_follows:
            # The retry's message is invisible to the reconciler for a moment (popped by a
            # worker, not yet in ``unacked``, its previous copy acked): a fresh record covers
            # that moment (``worker/reconciler.py`` leaves files changed within a TTL alone).
            pipe.eval(_STAMP, 1, f"{PREFIX}job:{key}", _now(), self.state_ttl_s)
        pipe.execute()

    def finish_step(self, job: Job, step: str, *, release: str = "", **fields: Any) -> None:
        """``save_doc`` + ``update(step:<step>=done, **fields)`` + ``clear_runs`` + this process's
        beat without the step, one round trip; ``release``: then the lease, if that chain holds it.

        With ``state="done"`` (the last step) the document is deleted instead: no step reads it
        any more (a late copy of the last step is skipped from the record), and at ~5 KB it
        was most of what a finished file kept in Redis for ``state_ttl_s`` (bench/RESULTS.md).
        The record then drops its per-step flags (``_DROP_FINISHED``).
        """
        from .heartbeats import beat_along

        key = job["key"]
        with beat_along(ended=(key, step)) as beat:
            pipe = self.redis.pipeline(transaction=False)
            self._queue_finish(pipe, job, step, fields)
            # After the step is marked done: the heartbeat stops naming it only once a copy
            # of its message would find it done (the busy rule of ``_TAKE_LEASE``).
            beat(pipe)
            if release:
                self._queue_release(pipe, key, release)
            pipe.execute()

    def _queue_finish(self, pipe: Any, job: Job, step: str, fields: dict[str, Any]) -> None:
        """Queue finish_step's record and document writes in ``pipe``."""
        key = job["key"]
        name = f"{PREFIX}job:{key}"
        values: dict[Any, Any] = {field: _text(value) for field, value in fields.items()}  # redis-py stubs
        values[f"step:{step}"] = "done"
        values["updated_at"] = _now()
        if fields.get("state") == "done":
            pipe.delete(f"{PREFIX}doc:{key}")
        else:
            pipe.set(f"{PREFIX}doc:{key}", json.dumps(job), ex=self.state_ttl_s)
        pipe.hset(name, mapping=values)
        pipe.expire(name, self.state_ttl_s)
        pipe.delete(f"{PREFIX}runs:{key}:{step}")
        pipe.hdel(name, f"waits:{step}")  # a later re-ingest's outages start from 0
        if "state" in fields:
            _index(pipe, key, values["state"])
        if fields.get("state") == "done":
            pipe.eval(_DROP_FINISHED, 1, name)
            # The registry lists files that need an operator: a file another copy of its chain
            # finished after one copy was failed (a resumed chain beside a retrying one) is done.
            pipe.hdel(FAILED_KEY, key)

    def note_retry(self, key: str, error: str) -> None:
        self.update(key, last_error=error)

    def note_wait(self, key: str, step: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrby(f"{PREFIX}job:{key}", f"waits:{step}", 1)
        pipe.expire(f"{PREFIX}job:{key}", self.state_ttl_s)  # never a record without a TTL
        pipe.execute()

    def note_write(self, key: str, step: str, at: float, *, writer: str, window_s: float) -> float:
        """See :meth:`StepLedger.note_write`: a script, so two executions cannot both pass."""
        left = self.redis.eval(_NOTE_WRITE, 1, f"{PREFIX}job:{key}", step, writer, repr(at), repr(window_s))
        return float(left)

    def fail_step(self, key: str, step: str, owner: str, failure: dict[str, Any]) -> None:
        """Failed registry + release the lease + reset the count (a requeue counts afresh)."""
        self.record_failure(key, failure)
        self.release_lease(key, owner)
        self.clear_runs(key, step)

    def record_refusal(self, path: str, job_id: str | None, reason: str, error_class: str) -> str:
        """Record a file the worker refused at ``offline_ingestor.submit`` (failed registry and
        record), so that ``failed``, ``status`` and a producer reading ``oi:job:<key>`` see it.
        Returns the key (the producer's job id when it gave one)."""
        resolved = Path(os.path.realpath(os.path.expanduser(path)))
        key = ingest_key(resolved, job_id)
        self.update(key, file=str(resolved), job_id=job_id or "", state="failed", step="submit")
        failure = {"file": str(resolved), "step": "submit", "error_class": error_class, "message": reason}
        self.record_failure(key, {**failure, "attempts": 1})
        return key

    def unclaim(self, key: str) -> None:
        """Forget a claim whose chain could not be published (the producer rolls back)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(f"{PREFIX}job:{key}")
        pipe.srem(UNFINISHED_KEY, key)
        pipe.execute()

    # -- failed registry ----------------------------------------------------------------------

    def record_failure(self, key: str, failure: dict[str, Any]) -> None:
        entry = {**failure, "key": key, "failed_at": _now()}
        pipe = self.redis.pipeline()
        pipe.hset(FAILED_KEY, key, json.dumps(entry))
        pipe.hset(
            f"{PREFIX}job:{key}",
            mapping={
                "state": "failed",
                "last_error": _text(failure.get("message", "")),
                "updated_at": _now(),
            },
        )
        pipe.expire(f"{PREFIX}job:{key}", self.state_ttl_s)
        pipe.srem(UNFINISHED_KEY, key)
        pipe.execute()

    def failures(self) -> list[dict[str, Any]]:
        entries = [json.loads(raw) for raw in self.redis.hgetall(FAILED_KEY).values()]
        return sorted(entries, key=lambda entry: entry.get("failed_at", ""))

    def failure(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.hget(FAILED_KEY, key)
        return json.loads(raw) if raw else None

    def records(self) -> Iterator[Record]:
        """Every record (a scan: for operators and tests, not hot paths)."""
        for name in self.redis.scan_iter(f"{PREFIX}job:*", count=1000):
            fields = cast(dict[str, str], self.redis.hgetall(name))
            if fields:
                yield Record(str(name).removeprefix(f"{PREFIX}job:"), fields)

    def unfinished(self, batch: int = 500) -> Iterator[Record]:
        """Every queued or running record, from the index: O(unfinished), not O(all records).

        Members whose record finished or expired (its TTL) are dropped on the way, by a script
        that looks at the state again (a claim made meanwhile keeps its member).
        """
        keys = sorted(str(key) for key in self.redis.smembers(UNFINISHED_KEY))
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            pipe = self.redis.pipeline(transaction=False)
            for key in chunk:
                pipe.hgetall(f"{PREFIX}job:{key}")
            stale = []
            for key, fields in zip(chunk, pipe.execute(), strict=True):
                if fields and fields.get("state") in UNFINISHED_STATES:
                    yield Record(key, fields)
                else:
                    stale.append(key)
            if stale:
                self.redis.eval(_PRUNE, 2, UNFINISHED_KEY, f"{PREFIX}job:", *stale)

    def index_unfinished(self) -> int:
        """Add every queued or running record to the index (one scan of all records: records
        written before the index existed); returns how many it holds."""
        keys = [record.key for record in self.records() if record.state in UNFINISHED_STATES]
        if keys:
            self.redis.sadd(UNFINISHED_KEY, *keys)
        return len(keys)

    def find_key(self, file: str) -> str | None:
        """The key of the newest record for a file path (``status FILE``)."""
        mine = [record for record in self.records() if record.fields.get("file") == file]
        newest = max(mine, key=lambda record: record.fields.get("updated_at", ""), default=None)
        return newest.key if newest else None

    def counts(self) -> dict[str, int]:
        """How many records are in each state."""
        totals: dict[str, int] = {}
        for record in self.records():
            totals[record.state or "?"] = totals.get(record.state or "?", 0) + 1
        return totals

    def step_runs(self, step: str) -> int:
        """How many keys have a started, unfinished execution of ``step`` (tests watch this)."""
        return sum(1 for _ in self.redis.scan_iter(f"{PREFIX}runs:*:{step}", count=1000))


def _index(pipe: Any, key: str, state: str) -> None:
    """Keep ``oi:unfinished`` in step with a record's new ``state`` (inside the caller's pipeline)."""
    if state in UNFINISHED_STATES:
        pipe.sadd(UNFINISHED_KEY, key)
    else:
        pipe.srem(UNFINISHED_KEY, key)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

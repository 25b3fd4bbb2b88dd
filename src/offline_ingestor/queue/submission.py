"""Submitting jobs: claim + publish, all or nothing, or the spool when Redis
cannot take them (see producer.py for the public API and the why).

Separate from producer.py so that the worker (which flushes the spool of its host) can use
it without importing the producer's Celery app set-up; the publish step is passed in.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from ..config import Config
from ..errors import ConfigError, QueueUnavailable
from ..ingest.job import Job
from .connection import describe, redis_failure
from .job_store import JobStore
from .spool import FlushResult, Spool, SpooledRequest

__all__ = ["EnqueueResult", "Producer", "Publish"]

log = structlog.get_logger("offline_ingestor.submission")

Publish = Callable[[Job], None]


@dataclass(frozen=True)
class EnqueueResult:
    """What happened to one path: ``queued``, ``spooled`` or ``already <state>``."""

    key: str
    file: str
    status: str

    @property
    def queued(self) -> bool:
        return self.status == "queued"

    @property
    def spooled(self) -> bool:
        return self.status == "spooled"


class Producer:
    """Submits jobs for one config; remembers within a batch that Redis is down.

    After the first request of a batch found Redis unavailable, the rest go straight to the
    spool instead of each waiting for a connect timeout.
    """

    def __init__(
        self,
        config: Config,
        *,
        store: JobStore | None = None,
        spool: Spool | bool | None = True,
        publish: Publish,
    ) -> None:
        self.config = config
        self._store = store
        self.spool: Spool | None = Spool.for_config(config) if spool is True else (spool or None)
        self.publish = publish
        self.redis_down = ""
        self._replicas: int | None = None

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore.for_config(self.config)
        return self._store

    def submit(self, job: Job, *, force: bool = False) -> EnqueueResult:
        """Claim and publish ``job``, or spool it when Redis cannot take it now."""
        if self.spool is not None and not self.redis_down and self.spool.has_pending():
            try:
                self.flush()
            except Exception as exc:  # one bad spooled request must not block new files
                log.warning("spool.flush_failed", error=f"{type(exc).__name__}: {exc}")
        if self.spool is not None and self.redis_down:
            return self._spool(job, force, uuid.uuid4().hex, self.redis_down)
        claim = uuid.uuid4().hex
        try:
            return self._send(job, force=force, claim=claim)
        except QueueUnavailable as exc:
            if self.spool is None:
                raise
            self.redis_down = exc.message
            return self._spool(job, force, claim, exc.message)

    def flush(self, limit: int | None = None) -> FlushResult:
        """Send spooled requests while Redis takes them (nothing when there is no spool)."""
        if self.spool is None:
            return FlushResult()
        # A long-lived producer (the worker's flusher) asks again each time: replicas come and go.
        self._replicas = None

        def send(request: SpooledRequest) -> str:
            status = self._send(request.job, force=request.force, claim=request.claim).status
            # One line per file: what the drop-in's fast path could not print ("already done").
            log.info(
                "spool.sent",
                key=request.job["key"],
                file=request.job["file"],
                status=status,
                waited_s=round(max(0.0, time.time() - request.spooled_at), 3),
            )
            return status

        result = self.spool.flush(send, limit=limit)
        if result.stopped:
            self.redis_down = result.stopped
        for stuck in result.stuck:
            log.error(
                "spool.cannot_remove",
                request=stuck,
                spool=str(self.spool.directory),
                hint="the flusher needs write access to the spool folder (docs/configuration.md)",
            )
        if result.sent or result.bad:
            log.info(
                "spool.flushed",
                sent=len(result.sent),
                left=result.left,
                bad=len(result.bad),
                spool=str(self.spool.directory),
            )
        return result

    def _spool(self, job: Job, force: bool, claim: str, reason: str) -> EnqueueResult:
        assert self.spool is not None
        self.spool.put(job, force=force, claim=claim, reason=reason)
        log.warning("enqueue.spooled", key=job["key"], file=job["file"], reason=reason)
        return EnqueueResult(job["key"], job["file"], "spooled")

    def _send(self, job: Job, *, force: bool, claim: str) -> EnqueueResult:
        """Claim (one MULTI), publish, mark published; Redis errors sorted out."""
        store = self.store
        try:
            claimed, previous = store.claim_for_queue(job, force=force, claim=claim)
            if not claimed:
                return EnqueueResult(job["key"], job["file"], f"already {previous}")
            try:
                self.publish(job)
            except BaseException:
                # Leave nothing behind that says "queued" without a message. If Redis is gone
                # this fails too; the claim id then lets the spooled retry re-take the claim.
                with contextlib.suppress(redis.RedisError, OSError):
                    store.release_claim(job["key"], claim)
                raise
            # A failure here leaves a published chain marked unpublished: a retry of the
            # same request publishes once more, which the leases make harmless.
            sentinel = self.config.queue.sentinel
            replicas = self._replicas_to_wait_for(store)
            acked = store.mark_published(
                job["key"], replicas=replicas, timeout_ms=sentinel.wait_timeout_ms if sentinel else 0
            )
            if acked < replicas:
                log.warning("enqueue.not_replicated", key=job["key"], replicas=acked, wanted=replicas)
        except Exception as exc:
            raise self._translate(exc, job) from None
        return EnqueueResult(job["key"], job["file"], "queued")

    def _replicas_to_wait_for(self, store: JobStore) -> int:
        """``queue.sentinel.wait_replicas``, but no more than are connected now (asked once a flush).

        With the replica gone (promoted, or down) there is nothing a WAIT can protect
        against, and every request would wait the whole timeout.
        """
        sentinel = self.config.queue.sentinel
        if sentinel is None or not sentinel.wait_replicas:
            return 0
        if self._replicas is None:
            info = store.redis.info("replication")
            self._replicas = min(sentinel.wait_replicas, int(info.get("connected_slaves", 0)))
        return self._replicas

    def _translate(self, exc: Exception, job: Job) -> Exception:
        kind = redis_failure(exc)
        where = describe(self.config.queue)
        if kind == "config":
            return ConfigError(
                f"Redis at {where} refused our login ({type(exc).__name__}: {exc}): check the user and "
                "password in queue.broker_url / queue.sentinel",
                file=job["file"],
            )
        if kind == "refused":
            return QueueUnavailable(f"Redis at {where} cannot take writes now: {exc}", file=job["file"])
        if kind == "unavailable":
            return QueueUnavailable(f"cannot reach Redis at {where}: {exc}", file=job["file"])
        return exc

"""SciCat's circuit breaker, shared through Redis: every worker host agrees SciCat is down or up.

The executor's :class:`~offline_ingestor.ingest.scicat_gate.ScicatGate` for the worker. State::

    oi:scicat:down_since   epoch seconds SciCat was found down; absent = up (closed breaker)
    oi:scicat:down_reason  the error that opened it
    oi:scicat:probes       failed health probes since then (the backoff's exponent)
    oi:scicat:next_probe   epoch seconds of the next health probe
    oi:scicat:probing      a short lock: one process probes at a time
    oi:scicat:waiting      sorted set, file key -> when it last waited for SciCat

Opening (``SET NX``) and closing (``GETDEL``) are single commands, so exactly one process logs
``scicat.down`` and one logs ``scicat.up`` (with the outage's length) per outage, whatever
the number of workers and files. While down, the steps that need SciCat do not run; a waiting
step asks again after :meth:`ScicatBreaker.wait_s`, and the first one past ``next_probe`` takes
the lock and asks SciCat's health endpoint: answered, the breaker closes and every step goes
on; not answered, the next probe is later (``scicat.outage_probe_s`` doubling up to
``scicat.outage_probe_max_s``). Timestamps are the hosts' clocks, like the write windows
(ingest/executor.py); a skew of a second only moves a probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from ..ingest.scicat_gate import Probe
from ..logs import get_logger
from .job_store import PREFIX

__all__ = ["Outage", "ScicatBreaker"]

log = get_logger("offline_ingestor.scicat")

DOWN_SINCE = f"{PREFIX}scicat:down_since"
DOWN_REASON = f"{PREFIX}scicat:down_reason"
PROBES = f"{PREFIX}scicat:probes"
NEXT_PROBE = f"{PREFIX}scicat:next_probe"
PROBING = f"{PREFIX}scicat:probing"
WAITING = f"{PREFIX}scicat:waiting"
#: While up, a process trusts its last look for this long: a step that meets the outage
#: first still confirms it (``confirm_down``), so this only saves a round trip per step.
UP_CACHE_S = 1.0


@dataclass(frozen=True)
class Outage:
    """An open breaker: since when SciCat is down, why, and how many files wait for it."""

    since: float
    reason: str
    waiting: int

    def describe(self, now: float | None = None) -> str:
        """What ``status`` and ``health`` print: since when, how long, how many files, why."""
        now = time.time() if now is None else now
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"waiting for SciCat since {since} ({_duration(now - self.since)}, "
            f"{self.waiting} files waiting): {self.reason}"
        )


class ScicatBreaker:
    """SciCat up or down for the whole deployment, in the Redis of ``client``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        probe_s: float = 1.0,
        probe_max_s: float = 10.0,
        probe_lock_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.probe_s = probe_s
        self.probe_max_s = probe_max_s
        #: Longer than one health request can take (``scicat.timeout``): a probing process
        #: that dies leaves the lock to expire.
        self.probe_lock_s = probe_lock_s
        self.clock = clock
        self._up_until = 0.0

    # -- the gate (ingest/scicat_gate.py) -----------------------------------------------------

    def wait_s(self, probe: Probe) -> float:
        """0 while SciCat is up or a due probe finds it up; else seconds until the next probe."""
        if time.monotonic() < self._up_until:
            return 0.0
        since, due = self.redis.mget(DOWN_SINCE, NEXT_PROBE)
        if since is None:
            self._up_until = time.monotonic() + UP_CACHE_S
            return 0.0
        now = self.clock()
        due_at = float(due) if due else now
        if now < due_at:
            return due_at - now
        if not self.redis.set(PROBING, "1", nx=True, px=int(self.probe_lock_s * 1000)):
            return self.probe_s  # another process is probing right now
        try:
            if _healthy(probe):
                self.close()
                return 0.0
            return self._probe_failed(now)
        finally:
            self.redis.delete(PROBING)

    def outage_wait_s(self, probe: Probe, reason: str) -> float | None:
        """None if SciCat is up; else the wait (the breaker open already, or opened now)."""
        self._up_until = 0.0
        if self.redis.exists(DOWN_SINCE):
            return self.wait_s(probe)  # a waiting step may be the one whose probe is due
        if _healthy(probe):
            return None
        self.open(reason)
        return self.probe_s

    def note_waiting(self, key: str) -> None:
        self.redis.zadd(WAITING, {key: self.clock()})

    # -- state changes --------------------------------------------------------------------------

    def open(self, reason: str) -> bool:
        """Mark SciCat down; True (and one ``scicat.down`` line) only for the process that did."""
        now = self.clock()
        if not self.redis.set(DOWN_SINCE, repr(now), nx=True):
            return False
        pipe = self.redis.pipeline()
        pipe.set(DOWN_REASON, reason)
        pipe.set(PROBES, 0)
        pipe.set(NEXT_PROBE, repr(now + self.probe_s))
        pipe.execute()
        log.warning("scicat.down", reason=reason, next_probe_s=self.probe_s,
                    action="steps that need SciCat wait; files keep their retries")  # fmt: skip
        return True

    def close(self) -> float | None:
        """Mark SciCat up; the outage's length (and one ``scicat.up`` line) for the process that did."""
        since = self.redis.getdel(DOWN_SINCE)
        if since is None:
            return None
        down_s = max(0.0, self.clock() - float(since))
        waiting = self._waiting_count()
        self.redis.delete(DOWN_REASON, PROBES, NEXT_PROBE, WAITING)
        log.warning("scicat.up", down_s=round(down_s, 1), files_waiting=waiting)
        return down_s

    def _probe_failed(self, now: float) -> float:
        probes = int(self.redis.incr(PROBES))
        wait = float(min(self.probe_max_s, self.probe_s * 2**probes))
        self.redis.set(NEXT_PROBE, repr(now + wait))
        log.info("scicat.probe_failed", probes=probes, next_probe_s=round(wait, 1))
        return wait

    # -- what operators see ---------------------------------------------------------------------

    def outage(self) -> Outage | None:
        """The open breaker, or None while SciCat is up."""
        since, reason = self.redis.mget(DOWN_SINCE, DOWN_REASON)
        if since is None:
            return None
        text = reason.decode() if isinstance(reason, bytes) else str(reason or "")
        return Outage(float(since), text, self._waiting_count())

    def _waiting_count(self) -> int:
        # Files that asked within the longest wait are waiting; older entries went on or away.
        recent = self.clock() - 2 * self.probe_max_s
        return int(self.redis.zcount(WAITING, recent, "+inf"))


def _healthy(probe: Probe) -> bool:
    """Whether SciCat's health endpoint answers: any exception means no."""
    try:
        probe()
    except Exception as exc:  # a probe's every failure means "not up", never a crash
        log.debug("scicat.probe", ok=False, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"

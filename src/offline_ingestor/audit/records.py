"""The Redis job records, read once per audit: state per key and per file.

Files enqueued by the drop-in carry the file writer's job id as their key, which the audit
cannot derive from the file alone; so records are also indexed by file path (the newest
record per file wins). One SCAN over ``oi:job:*`` with pipelined reads: records expire
after ``queue.state_ttl_s``, so their number stays bounded by the recent workload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from ..logs import get_logger
from ..queue.job_store import PREFIX, JobStore

__all__ = ["RedisStates"]

log = get_logger("offline_ingestor.audit")


@dataclass
class RedisStates:
    by_key: dict[str, str] = field(default_factory=dict)
    by_file: dict[str, tuple[str, str]] = field(default_factory=dict)  # file -> (updated_at, state)
    available: bool = True
    problem: str = ""

    @classmethod
    def load(cls, store: JobStore | None) -> RedisStates:
        if store is None:
            return cls(available=False, problem="no Redis configured")
        states = cls()
        try:
            names = list(store.redis.scan_iter(f"{PREFIX}job:*", count=1000))
            for start in range(0, len(names), 1000):
                batch = names[start : start + 1000]
                pipe = store.redis.pipeline(transaction=False)
                for name in batch:
                    pipe.hmget(name, "file", "state", "updated_at")
                for name, (file, state, updated) in zip(batch, pipe.execute(), strict=True):
                    key = str(name).removeprefix(f"{PREFIX}job:")
                    states.by_key[key] = str(state or "")
                    if file and (file not in states.by_file or str(updated) > states.by_file[file][0]):
                        states.by_file[file] = (str(updated or ""), str(state or ""))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log.warning("audit.redis_unavailable", error=str(exc))
            return cls(available=False, problem=f"Redis unreachable: {exc}")
        return states

    def state(self, key: str, file: str) -> str:
        """The record's state for this key, else the newest record's for this file, else ''."""
        if key in self.by_key:
            return self.by_key[key]
        return self.by_file.get(file, ("", ""))[1]

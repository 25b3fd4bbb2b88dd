"""The worker's :class:`~offline_ingestor.ingest.sample_lease.SampleLease`: one Redis key per sample.

``oi:sample-lease:<sample id>`` holds the holder's token with a TTL: the writers of one sample
in every worker take turns, and a writer whose POST got no answer keeps the key for the
POST's in-flight window (``ingest/samples.py``).
"""

from __future__ import annotations

from typing import Any

from .job_store import PREFIX

__all__ = ["RedisSampleLease"]

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_KEEP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisSampleLease:
    """Leases in the job store's Redis (``decode_responses`` connection)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._release = redis.register_script(_RELEASE)
        self._keep = redis.register_script(_KEEP)

    @staticmethod
    def _key(sample_id: str) -> str:
        return f"{PREFIX}sample-lease:{sample_id}"

    def acquire(self, sample_id: str, holder: str, ttl_s: float) -> float:
        key, ttl_ms = self._key(sample_id), max(1, int(ttl_s * 1000))
        if self.redis.set(key, holder, nx=True, px=ttl_ms):
            return 0.0
        if self.redis.get(key) == holder:
            self.redis.pexpire(key, ttl_ms)
            return 0.0
        left = self.redis.pttl(key)
        return max(0.01, left / 1000) if left and left > 0 else 0.01

    def release(self, sample_id: str, holder: str) -> None:
        self._release(keys=[self._key(sample_id)], args=[holder])

    def keep(self, sample_id: str, holder: str, ttl_s: float) -> None:
        self._keep(keys=[self._key(sample_id)], args=[holder, max(1, int(ttl_s * 1000))])

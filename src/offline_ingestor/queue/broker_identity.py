"""Which Redis queue a worker sends to, as text without a password.

The drop-in's fast path hands a request to the local worker only when the worker polling
the spool sends to the same broker and queue as the drop-in's config would; both sides
compare this text. Standard library only: the fast path imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from ..config import QueueOptions

__all__ = ["broker_identity", "strip_password"]


def strip_password(url: str) -> str:
    """``url`` without its password (kept: user, host, port, path)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@", 1)))


def broker_identity(queue: QueueOptions) -> str:
    """Where a worker sends spooled requests (no password): a fast-path producer must match it."""
    urls = ";".join(strip_password(part) for part in queue.broker_url.split(";"))
    where = urls
    if queue.sentinel is not None:
        sentinels = ",".join(queue.sentinel.sentinels) or urls
        where = f"sentinel {queue.sentinel.master_name}@{sentinels} db {queue.sentinel.db}"
    return f"{where} queue {queue.queue_name}"

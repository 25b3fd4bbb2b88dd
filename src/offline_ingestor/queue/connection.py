"""How we reach Redis: one host (``redis://``) or the master behind Redis Sentinel.

The job store (redis-py) and the broker (Celery/kombu) must talk to the same server, so both
take their connection from here. With Sentinel, redis-py's ``Sentinel.master_for`` asks the
sentinels for the current master and asks again after a failover; kombu does the same with
its documented ``sentinel://`` transport and the ``master_name`` transport option.

:func:`redis_failure` sorts a Redis exception into "Redis cannot take this now" (worth a
retry or the spool) and "the configuration is wrong" (a wrong password is not an outage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel as SentinelClient

from ..config import QueueOptions
from ..errors import ConfigError

__all__ = [
    "REDIS_TRANSIENT_ERRORS",
    "HiddenKwargs",
    "SentinelSpec",
    "broker_settings",
    "describe",
    "redact",
    "redis_client",
    "redis_failure",
    "sentinel_spec",
]

DEFAULT_SENTINEL_PORT = 26379

#: Redis errors after which the same call may succeed later: unreachable, timed out, loading,
#: full (``noeviction``) or a read-only replica during a failover. A step that meets one must
#: be requeued, not failed (a failure is acked: the file would be lost).
REDIS_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
)


@dataclass(frozen=True)
class SentinelSpec:
    """Where the sentinels are and how to log in to them and to the master."""

    master_name: str
    addresses: list[tuple[str, int]]
    db: int
    username: str
    password: str
    sentinel_password: str


def _sentinel_urls(url: str) -> list[str]:
    return [part for part in url.split(";") if part.strip()] if url.startswith("sentinel://") else []


def sentinel_spec(queue: QueueOptions) -> SentinelSpec | None:
    """The Sentinel set-up from ``queue.sentinel`` (+ a ``sentinel://`` broker_url), else None."""
    urls = _sentinel_urls(queue.broker_url)
    if queue.sentinel is None:
        if urls:
            raise ConfigError("config: queue.broker_url is a sentinel:// URL: set queue.sentinel.master_name")
        return None
    parsed = [urlsplit(url) for url in urls]
    addresses = [(part.hostname or "127.0.0.1", part.port or DEFAULT_SENTINEL_PORT) for part in parsed] + [
        _address(text) for text in queue.sentinel.sentinels
    ]
    if not addresses:
        raise ConfigError(
            "config: queue.sentinel: list the sentinels (queue.sentinel.sentinels: [host:port])"
        )
    first = parsed[0] if parsed else None
    url_db = first.path.strip("/") if first else ""
    return SentinelSpec(
        master_name=queue.sentinel.master_name,
        addresses=list(dict.fromkeys(addresses)),
        db=int(url_db) if url_db.isdigit() else queue.sentinel.db,
        username=queue.sentinel.username or unquote(first.username or "")
        if first
        else queue.sentinel.username,
        password=queue.sentinel.password.get_secret_value()
        or (unquote(first.password or "") if first else ""),
        sentinel_password=queue.sentinel.sentinel_password.get_secret_value(),
    )


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, DEFAULT_SENTINEL_PORT
    if not port.isdigit():
        raise ConfigError(f"config: queue.sentinel.sentinels: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def redis_client(
    queue: QueueOptions, *, socket_timeout: float = 10, connect_timeout: float = 5, decode: bool = True
) -> redis.Redis:
    """A client for the current Redis master (plain URL or through the sentinels)."""
    spec = sentinel_spec(queue)
    if spec is None:
        return redis.Redis.from_url(
            queue.broker_url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            decode_responses=decode,
        )
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": connect_timeout,
        "socket_connect_timeout": connect_timeout,
    }
    if spec.sentinel_password:
        sentinel_kwargs["password"] = spec.sentinel_password
    sentinels = SentinelClient(spec.addresses, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master = sentinels.master_for(  # type: ignore[no-untyped-call]
        spec.master_name,
        db=spec.db,
        username=spec.username or None,
        password=spec.password or None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        decode_responses=decode,
    )
    return cast(redis.Redis, master)


class HiddenKwargs:
    """Keyword arguments that never show their values: printed, repr'd or sent as JSON.

    kombu hands ``sentinel_kwargs`` (the sentinels' password) to redis-py as ``**kwargs``,
    but the same transport options are in the worker's ``celery inspect stats`` reply (and
    Flower's Broker tab), which kombu does not mask. Not a Mapping on purpose: Celery's
    ``inspect conf`` would walk a Mapping and print its values; ``**`` needs only ``keys``
    and ``__getitem__``. kombu's JSON encoder sends ``__json__``'s masked copy.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = dict(values)

    def keys(self) -> list[str]:
        return list(self._values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __json__(self) -> dict[str, str]:
        return dict.fromkeys(self._values, "********")

    def __repr__(self) -> str:
        return repr(self.__json__())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HiddenKwargs) and other._values == self._values

    __hash__ = None  # type: ignore[assignment]


def broker_settings(queue: QueueOptions) -> tuple[str, dict[str, Any]]:
    """Celery's ``broker_url`` and the extra ``broker_transport_options`` for it."""
    spec = sentinel_spec(queue)
    if spec is None:
        return queue.broker_url, {}
    auth = ""
    if spec.password:
        auth = f"{quote(spec.username, safe='')}:{quote(spec.password, safe='')}@"
    url = ";".join(f"sentinel://{auth}{host}:{port}/{spec.db}" for host, port in spec.addresses)
    options: dict[str, Any] = {"master_name": spec.master_name}
    if spec.sentinel_password:
        options["sentinel_kwargs"] = HiddenKwargs({"password": spec.sentinel_password})
    return url, options


def describe(queue: QueueOptions) -> str:
    """Where Redis is, for messages: never a password."""
    spec = sentinel_spec(queue)
    if spec is None:
        return redact(queue.broker_url)
    where = ", ".join(f"{host}:{port}" for host, port in spec.addresses)
    return f"master {spec.master_name!r} via sentinels {where}"


def redact(url: str) -> str:
    """A Redis URL (or ``;``-joined sentinel URLs) without passwords."""
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def redis_failure(exc: BaseException) -> Literal["config", "refused", "unavailable"] | None:
    """``config`` for a login refused, ``refused``/``unavailable`` when Redis cannot take a write now.

    "Cannot take it now": unreachable, timed out, loading, no master known to the sentinels,
    full (``OOM`` with ``noeviction``) or a read-only replica (a failover under way). kombu
    wraps connection errors in its ``OperationalError`` when publishing, so the causes count.
    """
    from kombu.exceptions import OperationalError

    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 6:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(_login_refused(each) for each in chain):
        return "config"
    refused = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
    if any(isinstance(each, refused) or _says_refused(each) for each in chain):
        return "refused"
    unavailable = (
        redis.ConnectionError,  # includes BusyLoadingError and Sentinel's MasterNotFoundError
        redis.TimeoutError,
        OperationalError,
        OSError,
    )
    return "unavailable" if any(isinstance(each, unavailable) for each in chain) else None


def _says_refused(exc: BaseException) -> bool:
    # kombu's pipelines re-raise Redis's answer with "Command # 1 (...) of pipeline caused error:".
    text = str(exc)
    return isinstance(exc, redis.ResponseError) and (
        "when used memory > 'maxmemory'" in text or "read only replica" in text
    )


def _login_refused(exc: BaseException) -> bool:
    # AuthenticationError is a ConnectionError subclass in redis-py: test it first.
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))

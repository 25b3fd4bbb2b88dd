"""Readiness checks: config, schemas, Redis, SciCat (login + health) and the data roots."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config

__all__ = ["Check", "heartbeat_age", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One check's outcome: ok, its name, and a short detail."""

    name: str
    ok: bool
    detail: str
    duration_ms: float = 0.0


def _timed(name: str, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail, ok = probe(), True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return Check(name, ok, detail, round((time.perf_counter() - started) * 1000, 1))


def _schemas(config: Config) -> str:
    from .schema import load_schemas

    fallback = config.ingestion.fallback_schema_file_path
    loaded = load_schemas(config.schemas_dir, config.resolve(fallback) if fallback else None)
    if loaded.broken:
        raise ValueError("; ".join(broken.message for broken in loaded.broken))
    if not loaded.schemas and loaded.fallback is None:
        raise ValueError(f"no schema files in {config.schemas_dir}")
    return f"{len(loaded.schemas)} schemas" + (", fallback set" if loaded.fallback else "")


def _redis(config: Config) -> str:
    import redis

    from .queue.connection import describe, redis_client

    client = redis_client(config.queue, socket_timeout=3, connect_timeout=3)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        # A ConnectionError subclass in redis-py, but retrying cannot fix a wrong password.
        raise ValueError(
            f"Redis at {describe(config.queue)} refused our login ({exc}): a configuration error, "
            "check the user/password in queue.broker_url or queue.sentinel"
        ) from None
    settings = _server_config(client, "maxmemory-policy", "appendonly", "save")
    policy = settings.get("maxmemory-policy", "?")
    if policy not in ("noeviction", "?"):
        raise ValueError(f"maxmemory-policy is {policy}; use noeviction (evicted keys lose messages)")
    if settings.get("appendonly") == "no" and settings.get("save", "?") == "":
        raise ValueError(
            'Redis has no persistence (appendonly no, save ""): a restart loses every queued file; '
            "set appendonly yes (see README, Deploy)"
        )
    persistence = (
        "AOF" if settings.get("appendonly") == "yes" else f"RDB only (save {settings.get('save', '?')!r})"
    )
    return f"PING ok, maxmemory-policy {policy}, persistence {persistence}"


def _server_config(client: object, *names: str) -> dict[str, str]:
    """CONFIG GET each name; a server that forbids CONFIG (managed Redis) answers "?"."""
    import redis

    found: dict[str, str] = {}
    for name in names:
        try:
            found.update({str(k): str(v) for k, v in client.config_get(name).items()})  # type: ignore[attr-defined]
        except redis.ResponseError:
            found[name] = "?"
    return found


def _scicat_outage(config: Config) -> str:
    """ "waiting for SciCat since …" while the workers' breaker is open; "" otherwise or unknown."""
    if not config.queue.enabled:
        return ""
    try:
        from .queue.connection import redis_client
        from .queue.scicat_breaker import ScicatBreaker

        outage = ScicatBreaker(redis_client(config.queue, socket_timeout=3, connect_timeout=3)).outage()
    except Exception:  # the redis check reports Redis; this is only a note on SciCat's
        return ""
    return outage.describe() if outage else ""


def _scicat(config: Config) -> str:
    from .scicat import ScicatClient
    from .scicat.rights import FIX, account_rights

    client = ScicatClient(config.scicat)
    waiting = _scicat_outage(config)
    try:
        client.health()
    except Exception as exc:
        raise ValueError(f"{exc}; {waiting}" if waiting else str(exc)) from None
    client.login()
    auth = "logged in" if config.scicat.username else ("token set" if client._token else "no credentials")
    # The exactly-once checks read back what we write: say now what this account may read.
    rights = account_rights(client)
    if rights.username is None:
        raise ValueError(
            f"{config.scicat.api_base}: SciCat treats our requests as anonymous ({auth}): the token "
            "is invalid, expired or from another SciCat; nothing could be written"
        )
    detail = f"{config.scicat.api_base} healthy, {auth}, {rights.describe()}"
    if waiting:  # SciCat answers, the workers have not probed since: their next probe resumes them
        detail += f"; workers still {waiting} (until their next probe)"
    if rights.reads_all is not True:
        detail += (
            f"; files whose ownerGroup/accessGroups name none of its groups are written only if it "
            f"can read them back (else refused per file: {FIX})"
        )
    return detail


def _data_roots(config: Config) -> str:
    roots = config.ingestion.allowed_data_roots
    if not roots:
        return "no restriction (set ingestion.allowed_data_roots)"
    missing = [root for root in roots if not os.access(root, os.R_OK | os.X_OK)]
    if missing:
        raise ValueError(f"not readable: {', '.join(missing)}")
    return f"{len(roots)} readable"


def _spool(config: Config) -> str:
    from .queue.spool import Spool

    spool = Spool.for_config(config)
    assert spool is not None
    spool.directory.mkdir(parents=True, exist_ok=True)
    if not os.access(spool.directory, os.W_OK | os.X_OK):
        raise ValueError(f"{spool.directory} is not writable")
    waiting, age = spool.count(), spool.oldest_age_s()
    if waiting >= spool.max_files:
        raise ValueError(f"full: {waiting} requests wait in {spool.directory}")
    oldest = f", oldest {age:.0f} s" if age is not None else ""
    return f"{waiting} waiting in {spool.directory}{oldest}"


def run_checks(config: Config, *, redis: bool = True, scicat: bool = True) -> list[Check]:
    """Run every readiness check; each reports instead of raising."""
    checks = [
        Check("config", True, config.source_path or "<in memory>"),
        _timed("schemas", lambda: _schemas(config)),
    ]
    if redis:
        checks.append(_timed("redis", lambda: _redis(config)))
        if config.queue.spool_dir:
            checks.append(_timed("spool", lambda: _spool(config)))
    if scicat:
        checks.append(_timed("scicat", lambda: _scicat(config)))
    checks.append(_timed("data_roots", lambda: _data_roots(config)))
    return checks


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the worker last touched its liveness file, or None if absent."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None

"""The drop-in's fast path: hand the request to the local worker through the spool.

The online ingestor spawns one ``scicat_background_ingestor`` per file, and importing Celery,
redis-py and pydantic there costs most of a second of CPU per file. When the config enables
the queue and a spool (``queue.spool_dir``) and a worker on this host flushes that spool to
the same Redis (it touches ``<spool_dir>/.flusher`` every half second: worker/spool_flusher.py),
the spawned process imports the standard library and PyYAML only: it checks what is cheap
to check (data roots, non-UTF-8 names, the file exists, the writer's message file) with the
same code and messages as the slow path, writes the request to the spool (fsynced) and
exits 0. The worker enqueues it within about a second, with the claim ("already done" is a
no-op there) and everything ``enqueue`` does; a file the worker then refuses lands in the
failed registry, naming the file.

The fast path runs only for a config whose exact bytes (same path, same environment
overrides) a full, pydantic-validated load has already accepted on this host: the slow path
records each such config in ``<spool_dir>/.configs/`` with the validated values the fast
path uses, so a broken or edited config still fails (or is re-validated) as before.
Everything else takes the unchanged slow path: upstream's extra flags, ``--dry-run``,
``--help``, a config not yet accepted, no live flusher, a spool that cannot take the request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config_paths import OVERRIDE_ENVS, config_source, resolve_from
from ..errors import IngestError, SpoolFull, is_transient
from ..queue.broker_identity import broker_identity, strip_password

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "FLUSHER_MAX_AGE_S",
    "remember_config",
    "run",
]

#: The fast path needs a flusher that polled the spool this recently (it polls every 0.5 s).
FLUSHER_MAX_AGE_S = 5.0


@dataclass(frozen=True)
class _Args:
    config: str
    nexus_file: str
    message_file: str | None


def _parse(argv: Sequence[str]) -> _Args | None:
    """The drop-in's own options only; anything else (a flag of upstream's, --help) -> None."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("-c", "--config-file", dest="config", required=True)
    parser.add_argument("--nexus-file", required=True)
    parser.add_argument("--done-writing-message-file", dest="message_file")
    parser.add_argument("--id")
    try:
        args, extra = parser.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):  # a missing value: the slow path says so
        return None
    if extra or not args.config or not args.nexus_file:
        return None
    return _Args(args.config, args.nexus_file, args.message_file or None)


def _fingerprint(source: str, text: bytes) -> str:
    """What a validated config depends on: its path, its bytes and the environment overrides."""
    digest = hashlib.sha256(b"offline-ingestor config v1\0" + os.fsencode(source) + b"\0" + text)
    for name in OVERRIDE_ENVS:
        # The broker URL changes where requests go (its password does not: the fast path never
        # connects); the secrets only whether a *_file key is read at all, so only their
        # presence counts. No password of the environment goes into the hash.
        value = os.environ.get(name) or ""
        shown = strip_password(value) if name.endswith("BROKER_URL") else ("set" if value else "")
        digest.update(b"\0" + name.encode() + b"=" + shown.encode())
    return digest.hexdigest()


def _records_dir(spool_dir: Path) -> Path:
    return spool_dir / ".configs"


def remember_config(config_path: str, config: Config, validated_text: bytes) -> None:
    """Record that this config (as ``validated_text``) passed a full load; best effort."""
    if not config.queue.enabled or not config.queue.spool_dir or config.ingestion.dry_run:
        return
    source = config_source(config_path)
    try:
        if Path(source).read_bytes() != validated_text:
            return  # edited since it was validated: the next call validates it again
        spool_dir = config.resolve(config.queue.spool_dir)
        record = {
            "source": source,
            "spool_dir": str(spool_dir),
            "spool_max_files": config.queue.spool_max_files,
            "allowed_data_roots": list(config.ingestion.allowed_data_roots),
            "logging_format": config.logging.format,
            "logging_level": config.logging.logging_level,
            "broker": broker_identity(config.queue),
        }
        directory = _records_dir(spool_dir)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{_fingerprint(source, validated_text)}.json"
        temporary = directory / f".{target.name}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temporary, target)
    except OSError:
        pass  # only a cache: without it the next call takes the slow path again


def _accepted(config_path: str) -> dict[str, Any] | None:
    """The validated values recorded for this exact config, or None (slow path)."""
    source = config_source(config_path)
    try:
        text = Path(source).read_bytes()
    except OSError:
        return None
    if b"spool_dir" not in text:
        return None  # no spool, no fast path: the in-process drop-in pays no YAML parse for it
    # The spool folder (where the record is) comes from the file itself, as Config reads it.
    import yaml  # PyYAML alone (~10 ms); the validation is what the record stands for

    try:
        data = yaml.safe_load(text.decode("utf-8"))
        spool_dir = data["queue"]["spool_dir"]
    except Exception:  # not YAML, no queue section, ...: the slow path says what is wrong
        return None
    if not isinstance(spool_dir, str) or not spool_dir:
        return None
    spool = resolve_from(source, spool_dir)
    try:
        record: dict[str, Any] = json.loads(
            (_records_dir(spool) / f"{_fingerprint(source, text)}.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return None
    if record.get("source") != source or record.get("spool_dir") != str(spool):
        return None
    return record


class _Log:
    """The slow path's structlog set-up, paid only when the fast path has a warning to log."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.logger: Any = None

    def warning(self, event: str, **fields: Any) -> Any:
        if self.logger is None:
            import structlog

            from ..logs import configure_logging

            configure_logging(self.record["logging_format"], self.record["logging_level"])
            self.logger = structlog.get_logger("offline_ingestor.done_writing")
        return self.logger.warning(event, **fields)


def run(argv: Sequence[str]) -> int | None:
    """Spool the request and return the exit status, or None to take the slow path."""
    args = _parse(argv)
    if args is None:
        return None
    record = _accepted(args.config)
    if record is None:
        return None
    from ..queue.spool import Spool

    spool = Spool(Path(record["spool_dir"]), int(record["spool_max_files"]))
    if not spool.flusher_alive(str(record["broker"]), FLUSHER_MAX_AGE_S):
        return None  # nobody here would send it on: enqueue directly (slow path)
    from ..ingest.job import new_job, printable_path

    try:
        job = new_job(
            args.nexus_file, record["allowed_data_roots"], message_file=args.message_file, log=_Log(record)
        )
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 75 if is_transient(exc) else 1
    try:
        spool.put(job, claim=uuid.uuid4().hex, reason="handed to the local worker")
    except SpoolFull:
        return None  # full or unwritable: the slow path tries Redis itself
    print(f"spooled: {job['key']} (the local worker enqueues it from {printable_path(spool.directory)})")
    return 0

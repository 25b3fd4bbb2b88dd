"""structlog setup: JSON for machines, readable lines on a terminal, never a secret."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger", "redact_secrets"]

_SECRET_KEYS = ("token", "password", "authorization", "secret", "access_token")


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a secret; a last line of defence."""
    for key in list(event):
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event[key] = "***"
    return event


def _add_process(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # `pid` in our events is the dataset pid; the OS process id goes under `process`.
    event.setdefault("process", os.getpid())
    return event


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog once per process; ``fmt`` is auto, json or console."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_process,
            redact_secrets,
            structlog.processors.dict_tracebacks if not console else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write() per line: PrintLogger's print() writes the message and its newline
        # separately, and with stderr on a file or pipe (unbuffered in Python) the lines of
        # two prefork children interleave as `{...}{...}\n\n` and stop being JSON lines
        # (seen by bench/ under load). WriteLogger writes `message + "\n"` in one call.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(renderer, stream, level, console)


def _route_stdlib(renderer: Any, stream: Any, level: str, console: bool = False) -> None:
    """Send warnings of stdlib loggers (Celery, kombu: "broker connection lost", "unrecoverable
    error") to the same stream and format; without a handler they were silently dropped."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_offline_ingestor", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._offline_ingestor = True  # type: ignore[attr-defined]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _add_process,
                redact_secrets,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # The record's traceback, rendered like our own events' (JSON: a list of frames;
                # without this the JSON renderer printed "<traceback object at 0x...>").
                structlog.dev.set_exc_info if console else structlog.processors.dict_tracebacks,
                renderer,
            ],
        )
    )
    handler.setLevel(max(logging.WARNING, logging.getLevelName(level)))
    root.addHandler(handler)


def get_logger(name: str = "offline_ingestor") -> Any:
    """A structlog logger bound to ``name``."""
    return structlog.get_logger(name)

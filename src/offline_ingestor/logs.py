"""structlog setup: JSON for machines, readable lines on a terminal, never a secret.

In JSON mode every line the process writes is one JSON object, with the fields ``event``,
``level``, ``timestamp``, ``logger``, ``process`` (OS pid) and, while a step runs, ``key``,
``file`` and ``step``. Tracebacks never carry frame locals, and a secret is replaced by
``***`` wherever it appears: under a key that names a secret, inside a nested value, inside
a message or a traceback (registered secret values and passwords in URLs).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from .current import current_step

__all__ = [
    "configure_logging",
    "get_logger",
    "progress_bar",
    "redact",
    "redact_secrets",
    "register_config_secrets",
    "register_secret",
    "scrub_url",
]

_SECRET_KEYS = ("token", "password", "passwd", "authorization", "secret", "cookie", "api_key")
# user:password@ in any URL (broker URLs, SciCat URLs); the password may hold anything but '@'.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")
_SECRETS: set[str] = set()
_REDACTED = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret value (password, token) so that it is redacted from every string."""
    if value and len(value) >= 4:  # shorter values would redact ordinary words
        _SECRETS.add(value)


def register_config_secrets(config: Any) -> None:
    """Register the SciCat password and token and the broker URL's password of ``config``."""
    from urllib.parse import urlsplit

    register_secret(config.scicat.password.get_secret_value())
    register_secret(config.scicat.token.get_secret_value())
    register_secret(urlsplit(config.queue.broker_url).password)


def scrub_url(text: str) -> str:
    """``text`` with every URL password and registered secret replaced by ``***``."""
    if "://" in text:  # the regex's own prefix: most values of a line hold no URL at all
        text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and _names_secret(key)


@functools.lru_cache(maxsize=4096)
def _names_secret(key: str) -> bool:
    """Whether a key names a secret; cached: a line's keys are mostly the same few names, and
    this test of every key of every line was most of a line's cost (issue 26 target 3)."""
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_KEYS)


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with secrets replaced, however deep they sit in dicts, lists and strings."""
    if depth > 20:
        return value
    if isinstance(value, str):
        return scrub_url(value)
    if isinstance(value, dict):
        return {
            key: _REDACTED if _is_secret_key(key) and item else redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item, depth + 1) for item in value)
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace secrets in the whole event (keys naming a secret, values holding one)."""
    for key in list(event):
        if key == "exc_info":  # rendered (and redacted) by the traceback processor below
            continue
        event[key] = _REDACTED if _is_secret_key(key) and event[key] else redact(event[key])
    return event


def _add_process(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # `dataset_pid` is SciCat's pid; the OS process id goes under `process`.
    event.setdefault("process", os.getpid())
    return event


class _NamedWriteLogger(structlog.WriteLogger):
    name = "offline_ingestor"


def _logger_factory(stream: Any) -> Any:
    def make(*args: Any) -> _NamedWriteLogger:
        logger = _NamedWriteLogger(stream)
        if args:
            logger.name = str(args[0])
        return logger

    return make


def _add_logger(logger: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.setdefault("logger", getattr(logger, "name", None))
    return event


def _add_current(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Name the file, key and step in progress here (see ``current.py``)."""
    for field, value in current_step().items():
        if value:
            event.setdefault(field, value)
    return event


# Frames only: locals held the SciCat password and the broker URL (structlog's default).
_dict_tracebacks = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def _tracebacks(console: bool) -> Any:
    """Render ``exc_info`` before redaction so that messages inside a traceback are scrubbed."""
    return structlog.processors.format_exc_info if console else _dict_tracebacks


class _Stream:
    """The log stream, aware of a progress bar on the same terminal: a log line clears the
    bar's line, is written, and the bar is drawn again below it (so lines print above it)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            bar = _BAR.get("bar")
            if bar is not None:
                self.stream.write("\r\x1b[2K")
            written = int(self.stream.write(text))
            if bar is not None:
                self.stream.flush()
                bar._last_line = None  # click skips drawing a line it drew last
                bar.render_progress()
            return written

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


_BAR: dict[str, Any] = {}


@contextmanager
def progress_bar(bar: Any) -> Iterator[Any]:
    """While in this block, log lines go above ``bar`` (a click progress bar) on its terminal."""
    _BAR["bar"] = bar
    try:
        yield bar
    finally:
        _BAR.pop("bar", None)


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog once per process; ``fmt`` is auto, json or console."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        # plain_traceback: the default (rich, when installed) prints frame locals.
        structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    out = _Stream(stream)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_process,
            _add_current,
            _tracebacks(console),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write() per line: PrintLogger's print() writes the message and its newline
        # separately, and with stderr on a file or pipe (unbuffered in Python) the lines of
        # two prefork children interleave as `{...}{...}\n\n` and stop being JSON lines
        # (seen by bench/ under load). WriteLogger writes `message + "\n"` in one call.
        logger_factory=_logger_factory(out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(renderer, out, level, console)


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    _offline_ingestor = True


def _route_stdlib(renderer: Any, stream: Any, level: str, console: bool = False) -> None:
    """Send warnings of stdlib loggers (Celery, kombu: "broker connection lost", "unrecoverable
    error"), Python warnings (Celery's SecurityWarning) and billiard's pool messages ("Process
    ... exited with signal 9") to the same stream and format; without a handler they were
    dropped or printed as plain text."""
    handler = _StdlibHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _add_process,
                _add_current,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # The record's traceback, rendered like our own events' (JSON: a list of frames;
                # without this the JSON renderer printed "<traceback object at 0x...>").
                _tracebacks(console),
                redact_secrets,
                renderer,
            ],
        )
    )
    handler.setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.captureWarnings(True)
    # billiard's logger ("multiprocessing") does not propagate: without its own handler its
    # errors reached stderr through logging's last-resort handler, as plain text.
    from billiard.util import get_logger as billiard_logger

    for target in (logging.getLogger(), billiard_logger()):
        for old in [h for h in target.handlers if getattr(h, "_offline_ingestor", False)]:
            target.removeHandler(old)
        target.addHandler(handler)


def get_logger(name: str = "offline_ingestor") -> Any:
    """A structlog logger whose events carry ``logger=name``."""
    # Lazy: resolved at first use, so a module-level logger follows configure_logging.
    return structlog.get_logger(name)

"""Logging: no frame locals and no secret in any traceback or event; log lines above a bar."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import click
import pytest

from offline_ingestor.config import load_config
from offline_ingestor.logs import configure_logging, get_logger, progress_bar, register_config_secrets

PASSWORD = "S3cretPassw0rd"
TOKEN = "tok-5ecret-abcdef123456"
BROKER = "redis://:Br0kerPw-xyz@redis-host:6379/0"
SECRETS = (PASSWORD, TOKEN, "Br0kerPw-xyz")


def _connect(password: str, token: str, broker_url: str) -> None:
    settings = {"scicat": {"password": password, "token": token}, "broker": broker_url}
    assert settings
    raise ConnectionError(f"cannot reach {broker_url} (token {token})")


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "c.yml"
    path.write_text(f"scicat:\n  host: http://x/api/v3\n  token: {TOKEN}\nqueue:\n  broker_url: {BROKER}\n")
    monkeypatch.setenv("OFFLINE_INGESTOR_SCICAT_PASSWORD", PASSWORD)
    return load_config(str(path))


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_carry_no_locals_and_no_secret(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised in a frame holding the password, the token and the broker URL,
    logged by structlog and by a stdlib logger (Celery's path), in both formats."""
    register_config_secrets(_config(tmp_path, monkeypatch))
    stream = io.StringIO()
    configure_logging(fmt, "INFO", stream=stream)
    try:
        _connect(PASSWORD, TOKEN, BROKER)
    except ConnectionError:
        get_logger("test").exception("scicat.failed", context={"auth": {"password": PASSWORD}}, url=BROKER)
        logging.getLogger("celery.test").error("Task raised", exc_info=True)
    text = stream.getvalue()
    assert "_connect" in text  # the traceback is there, frames and all
    assert "cannot reach redis://:***@redis-host" in text
    for secret in SECRETS:
        assert secret not in text
    if fmt == "json":
        events = [json.loads(line) for line in text.splitlines()]
        frames = events[0]["exception"][0]["frames"]
        assert all("locals" not in frame or not frame["locals"] for frame in frames)
        assert events[0]["logger"] == "test" and events[1]["logger"] == "celery.test"


def test_log_lines_print_above_the_progress_bar() -> None:
    """A log line written while the hashing bar is shown clears the bar's line, then the bar
    is drawn again after it: the bar never shares a line with a log line."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    configure_logging("console", "INFO", stream=terminal)
    with click.progressbar(length=100, label="hashing run.hdf", file=terminal) as bar, progress_bar(bar):
        bar.update(40)
        get_logger("test").warning("scicat.slow")
        bar.update(10)
    lines = terminal.getvalue().split("\n")
    (logged,) = [line for line in lines if "scicat.slow" in line]
    # the bar's text before the log line was cleared on that same terminal line
    assert "\r\x1b[2K" in logged and "hashing" not in logged.split("\r\x1b[2K")[-1]
    after = lines[lines.index(logged) + 1]
    assert "hashing run.hdf" in after and "40%" in after

"""Shared CLI plumbing: config option, error-to-exit-code mapping, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import IngestError, is_transient

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "EXIT_PERMANENT",
    "EXIT_TRANSIENT",
    "config_long_option",
    "config_option",
    "echo_json",
    "fail",
    "load",
    "main_entry",
]

F = TypeVar("F", bound=Callable[..., Any])

#: sysexits.h: EX_TEMPFAIL tells a caller that the same command may succeed later.
EXIT_TRANSIENT = 75
EXIT_PERMANENT = 1


def _config_option(*names: str) -> Callable[[F], F]:
    return click.option(
        *names,
        "config_path",
        envvar="OFFLINE_INGESTOR_CONFIG",
        type=click.Path(dir_okay=False),
        help="Config file (ESS ingestor YAML format). Default: $OFFLINE_INGESTOR_CONFIG.",
    )


config_option = _config_option("--config", "-c")
#: For the commands that pass Celery's own options on, where ``-c`` is Celery's concurrency.
config_long_option = _config_option("--config")


def fail(error: IngestError) -> None:
    """Print the one-line reason and exit: 75 when a retry may help, 1 otherwise."""
    click.echo(f"error: {error}", err=True)
    sys.exit(EXIT_TRANSIENT if is_transient(error) else EXIT_PERMANENT)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def load(config_path: str | None, *, dry_run: bool = False) -> Config:
    """Load the config and set up logging from it; ``dry_run`` turns ``ingestion.dry_run`` on."""
    from ..config import load_config
    from ..logs import configure_logging, register_config_secrets

    config = load_config(config_path)
    register_config_secrets(config)
    configure_logging(config.logging.format, config.logging.logging_level)
    return config.as_dry_run() if dry_run else config


def main_entry(command: Callable[..., Any]) -> None:
    """Run a click command, turning our errors into one line and an exit code."""
    try:
        command(standalone_mode=True)
    except IngestError as exc:
        fail(exc)

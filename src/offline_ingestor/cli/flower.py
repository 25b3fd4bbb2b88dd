"""``offline-ingestor flower``: stock Flower on the worker's broker, every page behind its login."""

from __future__ import annotations

import os
import sys

import click

from .common import config_long_option

__all__ = ["flower"]


@click.command("flower", context_settings={"ignore_unknown_options": True})
@config_long_option
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(config_path: str | None, flower_args: tuple[str, ...]) -> None:
    """Run Flower on the worker's broker (extra arguments go to `celery flower`).

    Needs the ``flower`` extra (in the image) and a login: ``--basic-auth=user:password`` or
    ``$FLOWER_BASIC_AUTH``; ``/metrics`` and ``/healthcheck`` ask for it too.
    """
    from ..config import load_config
    from ..errors import ConfigError

    config = load_config(config_path)
    if not (os.environ.get("FLOWER_BASIC_AUTH") or any(a.startswith("--basic-auth") for a in flower_args)):
        raise ConfigError("flower: set FLOWER_BASIC_AUTH=user:password (or --basic-auth): no open Flower")
    try:
        from ..worker.flower import protect_probes

        protect_probes()
    except ImportError:
        raise ConfigError("flower is not installed: pip install 'offline-ingestor[flower]'") from None
    from ..worker.app import app_for

    code = app_for(config).start(argv=["flower", *flower_args])
    sys.exit(code if isinstance(code, int) else 0)

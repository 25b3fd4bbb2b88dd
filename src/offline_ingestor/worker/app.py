"""The Celery application (like Celery's ``proj/celery.py``).

The config file comes from ``$OFFLINE_INGESTOR_CONFIG`` in the worker; producers configure
an app from their own config through :func:`app_for`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery, signals

from ..config import CONFIG_ENV, Config, load_config
from ..errors import ConfigError
from . import envelope  # noqa: F401  (connects the handler that trims our step messages)
from .running import running_config, set_running_config
from .settings import celery_settings

__all__ = ["app", "app_for", "configure"]

app = Celery("offline_ingestor", include=["offline_ingestor.worker.tasks"])


def configure(target: Celery, config: Config) -> Celery:
    """Apply our settings; a producer switching brokers drops its pooled connections."""
    settings = celery_settings(config)
    pool = target._pool
    if pool is not None and target.conf.broker_url != settings["broker_url"]:
        # Celery keeps the connection pool of the first broker URL it used; without this a
        # process that enqueues with a second config would still publish to the first Redis.
        pool.force_close_all()
        target._pool = None
        target.amqp._producer_pool = None
    target.conf.update(settings)
    # Not in target.conf: Celery's `conf` reply (inspect conf, Flower) prints it (running.py).
    set_running_config(config)
    return target


def app_for(config: Config) -> Celery:
    """The shared app, configured from ``config`` (producers and tests)."""
    return configure(app, config)


def _celery_command() -> bool:
    """Whether this process is Celery's own command (``celery -A offline_ingestor.worker ...``)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return program.name == "celery" or (program.name == "__main__.py" and program.parent.name == "celery")


def _configure_from_environment() -> None:
    """Load ``$OFFLINE_INGESTOR_CONFIG``; Celery's command refuses to run without a valid one.

    Without a config ``celery status``/``inspect`` would ask Celery's default broker and
    report "no nodes replied", and a bad config would end in Celery's "Unable to load celery
    application" with a traceback: one line instead, like ``offline-ingestor``'s commands.
    A library import (a producer) only raises, so its caller decides.
    """
    path = os.environ.get(CONFIG_ENV)
    try:
        if not path:
            raise ConfigError(f"no config: set ${CONFIG_ENV} (the worker's config file)")
        configure(app, load_config(path))
    except ConfigError as exc:
        if _celery_command():
            sys.exit(f"error: {exc}")
        if path:
            raise


_configure_from_environment()


@signals.celeryd_init.connect
def _full_setup(instance: Any = None, **_: Any) -> None:
    """A worker started as ``celery -A offline_ingestor.worker worker`` gets the same set-up
    as ``offline-ingestor worker`` (logs, redaction, metrics, heartbeat, kombu fix), and one
    without a config refuses to start instead of consuming from a default Redis."""
    config = running_config()
    if config is None:
        sys.exit(
            f"offline-ingestor: no config for the worker: set ${CONFIG_ENV} "
            "(or run `offline-ingestor worker --config FILE`)"
        )
    from .setup import json_mode, prepare_worker

    prepare_worker(config)
    if instance is not None and json_mode(config):
        instance.quiet = True  # no banner: JSON lines only (worker.starting says the same)

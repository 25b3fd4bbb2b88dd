"""The Celery application (like Celery's ``proj/celery.py``).

The config file comes from ``$OFFLINE_INGESTOR_CONFIG`` in the worker; producers configure
an app from their own config through :func:`app_for`.
"""

from __future__ import annotations

import os

from celery import Celery

from .celery_config import celery_settings
from .config import CONFIG_ENV, Config, load_config

__all__ = ["app", "app_for", "configure"]

app = Celery("offline_ingestor", include=["offline_ingestor.tasks"])


def configure(target: Celery, config: Config) -> Celery:
    target.conf.update(celery_settings(config))
    target.conf["offline_ingestor_config"] = config
    return target


def app_for(config: Config) -> Celery:
    """The shared app, configured from ``config`` (producers and tests)."""
    return configure(app, config)


if os.environ.get(CONFIG_ENV):
    configure(app, load_config(os.environ[CONFIG_ENV]))

"""The running worker's config and logger, for the hook modules (a leaf: they all import it)."""

from __future__ import annotations

from typing import Any

from ..logs import get_logger

__all__ = ["log", "running_config"]

log = get_logger("offline_ingestor.worker")


def running_config() -> Any:
    """The running worker's config (``app.py``'s app, read without importing it: it imports us)."""
    from celery import current_app

    return current_app.conf.get("offline_ingestor_config")

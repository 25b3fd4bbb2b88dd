"""The running worker's config and logger, for the hook modules (a leaf: they all import it).

The config is held here, not in Celery's settings: ``celery inspect conf``, ``inspect
report`` and Flower's Config tab print every setting of ``app.conf``, and the config holds
the Redis URL with its password (Celery masks only its own ``broker_url``).
"""

from __future__ import annotations

from typing import Any

from ..logs import get_logger

__all__ = ["log", "running_config", "set_running_config"]

log = get_logger("offline_ingestor.worker")


_HOLDER: dict[str, Any] = {}


def set_running_config(config: Any) -> None:
    """Make ``config`` this process's config (``app.py``'s ``configure``)."""
    _HOLDER["config"] = config


def running_config() -> Any:
    """This process's config (None before ``configure``: a worker started without one)."""
    return _HOLDER.get("config")

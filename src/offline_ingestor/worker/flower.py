"""Flower run with our app: the worker's broker (password, Sentinel) and no open endpoints.

Stock Flower given only ``--broker=redis://redis:6379/0`` cannot follow a password from a
secret, nor a Sentinel master (``master_name``, the sentinels' password are transport
options). Run as ``celery -A offline_ingestor.worker flower`` it takes both from our config,
as the worker does. Flower serves ``/metrics`` and ``/healthcheck`` without authentication
even with ``--basic-auth``; :func:`protect_probes` puts them behind the same login.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROBES", "protect_probes"]

#: Flower's handlers that answer without authentication (flower/views/monitor.py).
PROBES = ("Metrics", "Healthcheck")


def protect_probes() -> None:
    """Make Flower's ``/metrics`` and ``/healthcheck`` ask for the UI's login (idempotent)."""
    import tornado.web
    from flower.views import monitor

    for name in PROBES:
        handler: Any = getattr(monitor, name)
        if getattr(handler.get, "_offline_ingestor", False):
            continue
        # tornado's decorator calls Flower's get_current_user: 401 without valid basic auth.
        protected: Any = tornado.web.authenticated(handler.get)
        protected._offline_ingestor = True
        handler.get = protected

"""Everything Celery and kombu: the app, its settings, the tasks, the chain and the worker's hooks.

``celery -A offline_ingestor.worker`` finds :data:`app` here.
"""

from .app import app, app_for, configure

__all__ = ["app", "app_for", "configure"]

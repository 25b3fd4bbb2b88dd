"""A file that fails as expected is one log line: our ``ingest.failed``, not Celery's too.

The step tasks declare our errors as expected (``throws`` in ``tasks.py``), so Celery logs
them at INFO without a traceback ("raised expected") instead of "raised unexpected" with
eight frames at ERROR. That INFO line still repeats what ``ingest.failed`` (or
``submit.refused``) said with the file, key, step and SciCat's message; it is dropped here.
Unexpected errors (a bug, a crash) keep Celery's line and its traceback.
"""

from __future__ import annotations

import logging

__all__ = ["ExpectedFailureFilter"]

#: Celery's logger for task outcomes (celery/app/trace.py).
TRACE_LOGGER = "celery.app.trace"


class ExpectedFailureFilter(logging.Filter):
    """Drop Celery's "raised expected" line: our own event has already said it."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        return not (isinstance(data, dict) and data.get("description") == "raised expected")


def _install() -> None:
    logger = logging.getLogger(TRACE_LOGGER)
    if not any(isinstance(each, ExpectedFailureFilter) for each in logger.filters):
        logger.addFilter(ExpectedFailureFilter())


_install()

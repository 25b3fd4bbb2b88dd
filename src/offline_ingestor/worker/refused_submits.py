"""A file the ``offline_ingestor.submit`` task refused goes to the failed registry, not only the log."""

from __future__ import annotations

from typing import Any

from celery import signals

from .running import log, running_config


@signals.task_failure.connect
def _record_refused_submit(
    sender: Any = None, exception: BaseException | None = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    """A file ``offline_ingestor.submit`` refused (outside the data roots, missing) goes to
    the failed registry and its record, not only to the log: ``failed``, ``status`` and a
    producer reading ``oi:job:<job id>`` then see it."""
    from ..errors import IngestError, is_transient

    if getattr(sender, "name", None) != "offline_ingestor.submit" or not isinstance(exception, IngestError):
        return
    if is_transient(exception) or not args:
        return
    from ..queue.job_store import JobStore

    config = running_config()
    job_id, reason = (kwargs or {}).get("job_id"), str(exception)
    try:
        key = JobStore.for_config(config).record_refusal(
            str(args[0]), job_id, reason, type(exception).__name__
        )
    except Exception as exc:  # Redis gone: the log line below is all there is
        log.error("submit.refusal_not_recorded", file=str(args[0]), error=str(exc))
        return
    from .. import metrics

    metrics.count_file("refused", None)
    log.warning("submit.refused", key=key, file=str(args[0]), writer_job_id=job_id, reason=str(exception))

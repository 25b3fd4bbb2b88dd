"""A thread in the worker's main process that closes SciCat's breaker when no step is waiting.

Waiting steps probe SciCat's health themselves (``queue/scicat_breaker.py``); but an outage
can end with no step left to ask (the files finished, or were waiting on other things), and
an open breaker would then say "waiting for SciCat" in ``status``, ``health`` and the metrics
until the next file. This thread asks the breaker about once a second and, while it is open
and a probe is due, probes like any waiting step would (the breaker's lock: one at a time).
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import signals

from .periodic import Periodic
from .running import running_config

__all__ = ["POLL_S"]

#: How often the thread looks at the breaker (one Redis read while SciCat is up).
POLL_S = 1.0
_running: list[Periodic] = []


@signals.worker_ready.connect
def _start_prober(**_: Any) -> None:
    config = running_config()
    if config is None:
        return
    from ..queue.job_store import JobStore
    from ..queue.scicat_breaker import ScicatBreaker
    from ..scicat import ScicatClient

    scicat = config.scicat
    breaker = ScicatBreaker(
        JobStore.for_config(config).redis,
        probe_s=scicat.outage_probe_s,
        probe_max_s=scicat.outage_probe_max_s,
        probe_lock_s=scicat.timeout + 5,
    )
    client = ScicatClient(scicat)
    logger = structlog.get_logger("offline_ingestor.scicat")

    def failed(exc: Exception) -> None:  # Redis away, say: the next poll tries again
        logger.debug("scicat.prober_failed", error=f"{type(exc).__name__}: {exc}")

    _running.append(Periodic("scicat-prober", POLL_S, lambda: breaker.wait_s(client.health), failed).start())


@signals.worker_shutdown.connect
def _stop_prober(**_: Any) -> None:
    for prober in _running:
        prober.stop()

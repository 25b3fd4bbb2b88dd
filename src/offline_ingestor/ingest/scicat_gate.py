"""Whether SciCat is up, as the step executor asks it: the protocol and the no-op gate.

SciCat's availability is one fact for the whole deployment, not a per-file retry count. The
worker passes a breaker shared through Redis (``queue/scicat_breaker.py``); ``ingest-now`` and
the drop-in pass :data:`NO_GATE` (one file, someone waiting: SciCat down ends the command with
exit 75 instead).

The executor uses it twice:

* before a step that needs SciCat: :meth:`ScicatGate.wait_s` is 0 while SciCat is up; while it
  is down the step does not run and waits that long (uncounted), one caller at a time probing
  SciCat's health when a probe is due;
* after a step met an outage-shaped error (``ScicatUnavailable.outage``):
  :meth:`ScicatGate.outage_wait_s` says whether SciCat is down (the breaker already open, or a
  health probe fails now and opens it). Only then is the failure not the file's own; the step
  waits, uncounted, and is retried once SciCat answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["NO_GATE", "NoGate", "Probe", "ScicatGate"]

#: Asks SciCat's health endpoint; raises when SciCat does not answer healthy.
Probe = Callable[[], object]


class ScicatGate(Protocol):
    """The calls the step executor makes about SciCat's availability."""

    def wait_s(self, probe: Probe) -> float:
        """0 if SciCat is taken to be up (a due probe just found it up), else seconds to wait."""

    def outage_wait_s(self, probe: Probe, reason: str) -> float | None:
        """After an outage-shaped error: None if SciCat is up (the file's own failure), else the wait.

        SciCat is down when the breaker is open already or a health probe fails now (which
        opens it). The wait may be 0: a due probe just found SciCat back.
        """

    def note_waiting(self, key: str) -> None:
        """Count the file ``key`` as waiting for SciCat (for metrics and ``status``)."""


class NoGate:
    """SciCat is always taken to be up: every failure is the file's own (``ingest-now``)."""

    def wait_s(self, probe: Probe) -> float:
        return 0.0

    def outage_wait_s(self, probe: Probe, reason: str) -> float | None:
        return None

    def note_waiting(self, key: str) -> None:
        return None


NO_GATE = NoGate()

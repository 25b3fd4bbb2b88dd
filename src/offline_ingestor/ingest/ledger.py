"""Where the step executor keeps a file's progress: the protocol, and its in-memory form.

The worker's ledger is the Redis :class:`~offline_ingestor.job_store.JobStore` (shared by
every worker, survives crashes); ``ingest-now`` runs in one process and keeps the same
records in a :class:`MemoryLedger`. Both answer the same calls, so the executor runs the
same protocol for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .job import Job

__all__ = ["MemoryLedger", "Record", "StepLedger", "StepStart"]


@dataclass(frozen=True)
class Record:
    """What the ledger knows about one key (all values are strings, as in Redis)."""

    key: str
    fields: dict[str, str]

    @property
    def state(self) -> str:
        return self.fields.get("state", "")

    def step_done(self, step: str) -> bool:
        """A ``step:<name>=done`` flag, or a finished file (its record drops the flags)."""
        return self.fields.get(f"step:{step}") == "done" or self.state == "done"

    def write_started(self, step: str) -> float | None:
        """When ``step`` last sent a write to SciCat (epoch seconds), if it did."""
        value = self.fields.get(f"write:{step}")
        return float(value) if value else None

    def waits(self, step: str) -> int:
        """Attempts of ``step`` that waited for SciCat to come back: not the file's retries."""
        return int(self.fields.get(f"waits:{step}") or 0)

    def write_deadline(self, step: str) -> float | None:
        """Until when that write may still reach SciCat, by its sender's own timeout."""
        value = self.fields.get(f"write_until:{step}")
        return float(value) if value else None


@dataclass(frozen=True)
class StepStart:
    """What an attempt learns before its step runs (see :meth:`StepLedger.begin_step`)."""

    #: Executions of this step so far, this one included (by any copy, retries too).
    runs: int
    #: Whether this chain holds the key's lease (no other chain works on the file).
    leased: bool
    record: Record | None
    #: The job document saved by the previous step, None if never saved or lost.
    doc: Job | None
    #: Executions of this step whose process died running them (the redelivery cap counts these).
    deaths: int = 0
    #: This execution's name in the ledger until :meth:`StepLedger.end_step`.
    run_id: str = ""


class StepLedger(Protocol):
    """The calls the step executor makes around each attempt."""

    def begin_step(self, key: str, step: str, owner: str, attempt: int = 0) -> StepStart:
        """Count the execution, take or confirm the lease, read the record and document.

        Each execution stays open until :meth:`end_step` (or the step finishes or fails); one
        still open whose process is gone was a death (:attr:`StepStart.deaths`). With the
        lease, and unless the step or the file is done, the record says that ``step`` runs
        (``state="running"``, ``step``, ``attempts`` = ``attempt + 1``) before this returns.
        """

    def end_step(self, key: str, step: str, run_id: str, *, message_follows: bool) -> None:
        """Close execution ``run_id``: it ended (a retry, a wait, a refused or skipped copy), it
        did not die. ``message_follows``: a retry or next step is published now; stamp the record."""

    def note_retry(self, key: str, error: str) -> None:
        """Record the error of a failed attempt that will be retried."""

    def note_wait(self, key: str, step: str) -> None:
        """Count one attempt of ``step`` that waited for SciCat (:meth:`Record.waits`)."""

    def note_write(self, key: str, step: str, at: float, *, writer: str, window_s: float) -> float:
        """Record that ``writer`` sends a write of ``step`` to SciCat at ``at`` (epoch seconds).

        Refused, recording nothing, while another writer's write of this step may still be in
        flight (sent less than ``window_s`` ago): returns the seconds left, else 0.
        """

    def finish_step(self, job: Job, step: str, *, release: str = "", **fields: Any) -> None:
        """Save the document (drop it with ``state="done"``), mark the step done, reset its count;
        ``release``: then give the lease up if that chain holds it (the file's last step)."""

    def fail_step(self, key: str, step: str, owner: str, failure: dict[str, Any]) -> None:
        """Put the key in the failed registry, release the lease, reset the count."""

    def release_lease(self, key: str, owner: str) -> None:
        """Give the key's lease up if ``owner`` still holds it."""


@dataclass
class MemoryLedger:
    """A ledger for one process: ``ingest-now`` and unit tests."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    deaths: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Executions begun and not ended, per key and step (one process: any left open died).
    open_runs: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    leases: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    docs: dict[str, Job] = field(default_factory=dict)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def begin_step(self, key: str, step: str, owner: str, attempt: int = 0) -> StepStart:
        self.runs[key, step] = self.runs.get((key, step), 0) + 1
        left_open = self.open_runs.setdefault((key, step), set())
        self.deaths[key, step] = self.deaths.get((key, step), 0) + len(left_open)
        run_id = f"run-{self.runs[key, step]}"
        self.open_runs[key, step] = {run_id}
        holder = self.leases.setdefault(key, owner)
        fields = self.records.get(key)
        if holder == owner and not (fields is not None and Record(key, fields).step_done(step)):
            fields = self.records.setdefault(key, {})
            fields.update(state="running", step=step, attempts=str(attempt + 1))
        return StepStart(
            runs=self.runs[key, step],
            leased=holder == owner,
            record=Record(key, dict(fields)) if fields else None,
            doc=self.docs.get(key),
            deaths=self.deaths[key, step],
            run_id=run_id,
        )

    def end_step(self, key: str, step: str, run_id: str, *, message_follows: bool) -> None:
        self.open_runs.get((key, step), set()).discard(run_id)

    def _forget_runs(self, key: str, step: str) -> None:
        for counts in (self.runs, self.deaths, self.open_runs):
            counts.pop((key, step), None)

    def note_retry(self, key: str, error: str) -> None:
        self.records.setdefault(key, {})["last_error"] = error

    def note_wait(self, key: str, step: str) -> None:
        fields = self.records.setdefault(key, {})
        fields[f"waits:{step}"] = str(int(fields.get(f"waits:{step}") or 0) + 1)

    def note_write(self, key: str, step: str, at: float, *, writer: str, window_s: float) -> float:
        fields = self.records.setdefault(key, {})
        holder, deadline = fields.get(f"writer:{step}"), float(fields.get(f"write_until:{step}") or 0)
        if holder is not None and holder != writer and at < deadline:
            return deadline - at
        fields.update(
            {f"writer:{step}": writer, f"write:{step}": repr(at), f"write_until:{step}": repr(at + window_s)}
        )
        return 0.0

    def finish_step(self, job: Job, step: str, *, release: str = "", **fields: Any) -> None:
        key = job["key"]
        if fields.get("state") == "done":
            self.docs.pop(key, None)
        else:
            self.docs[key] = job
        self.records.setdefault(key, {}).update({name: str(value) for name, value in fields.items()})
        self.records[key][f"step:{step}"] = "done"
        self.records[key].pop(f"waits:{step}", None)
        self._forget_runs(key, step)
        if release:
            self.release_lease(key, release)

    def fail_step(self, key: str, step: str, owner: str, failure: dict[str, Any]) -> None:
        self.failed[key] = failure
        self.records.setdefault(key, {}).update(state="failed", last_error=str(failure.get("message", "")))
        self.release_lease(key, owner)
        self._forget_runs(key, step)

    def release_lease(self, key: str, owner: str) -> None:
        if self.leases.get(key) == owner:
            del self.leases[key]

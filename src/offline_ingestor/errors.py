"""The error tree: one place decides whether a failure is retried or final.

::

    IngestError                      base of everything this package raises on purpose
    ├── TransientError               retry with backoff: the same input may succeed later
    │   ├── FileNotReady             file missing size/mtime stability, locked or still being written
    │   ├── ScicatUnavailable        connection error, timeout, 5xx, 429; with ``outage``
    │   │                            (no answer, 502/503/504) the executor asks the SciCat
    │   │                            breaker and, if SciCat is down, waits uncounted
    │   └── QueueUnavailable         Redis (the broker) cannot be reached or take writes
    │       └── SpoolFull            ... and the producer's spool cannot hold the request either
    └── PermanentError               never retried: fix the input, then requeue
        ├── ConfigError              bad configuration file or environment
        ├── SchemaError              broken schema file, unknown operator/type/selector,
        │   └── NoMatchingSchema     no schema selects the file and there is no fallback
        ├── VariableError            a schema variable could not be computed
        ├── InputFileError           missing/empty/non-HDF5/unreadable data file, path refused
        │   └── NexusReadError       a NeXus path is missing or has an unusable type
        ├── ScicatRejected           4xx from SciCat (status and the server's message)
        │   └── ScicatAuthError      login failed, or SciCat took our token as anonymous
        ├── IdempotencyConflict      a pid exists in SciCat but is not the dataset we made
        └── CannotVerify             SciCat refuses the reads exactly-once needs (403)

Every error carries the ``step`` and ``file`` it happened in when known, so a one-line
message names what to fix; ``hint`` (optional) says what to do about it, e.g. how to finish a
file SciCat holds only half of.
"""

from __future__ import annotations

__all__ = [
    "CannotVerify",
    "ConfigError",
    "FileNotReady",
    "IdempotencyConflict",
    "IngestError",
    "InputFileError",
    "NexusReadError",
    "NoMatchingSchema",
    "PermanentError",
    "QueueUnavailable",
    "SchemaError",
    "ScicatAuthError",
    "ScicatRejected",
    "ScicatUnavailable",
    "SpoolFull",
    "TransientError",
    "VariableError",
    "is_transient",
]


class IngestError(Exception):
    """Base class: a failure with a message a human can act on."""

    def __init__(
        self, message: str, *, step: str | None = None, file: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.file = file
        self.hint = hint

    def __str__(self) -> str:
        where = ", ".join(
            part for part in (f"step {self.step}" if self.step else "", self.file or "") if part
        )
        return f"{self.message} [{where}]" if where else self.message

    def at(self, *, step: str | None = None, file: str | None = None) -> IngestError:
        """Fill in where the error happened, keeping what is already known."""
        self.step = self.step or step
        self.file = self.file or file
        return self

    def to_dict(self) -> dict[str, str | bool | None]:
        """JSON-able form for the failed registry and ``--json`` output (``transient`` a bool)."""
        record: dict[str, str | bool | None] = {
            "error_class": type(self).__name__,
            "message": self.message,
            "step": self.step,
            "file": self.file,
            "transient": is_transient(self),
        }
        if self.hint:
            record["hint"] = self.hint
        return record


class TransientError(IngestError):
    """The same input may succeed later: retry with backoff."""


class PermanentError(IngestError):
    """Retrying cannot help: record as failed and wait for a fix."""


class FileNotReady(TransientError):
    """The data file is still being written, locked, or not yet visible."""


#: Answers meaning "SciCat is not there" rather than "this request failed" (a gateway's word).
OUTAGE_STATUSES = frozenset({502, 503, 504})


class ScicatUnavailable(TransientError):
    """SciCat could not be reached or answered 5xx/429."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        **where: str | None,
    ) -> None:
        super().__init__(message, **where)
        self.status = status
        #: Seconds the server asked us to wait (``Retry-After`` of a 429/503), if any.
        self.retry_after = retry_after

    @property
    def may_still_land(self) -> bool:
        """Whether a write that met this error may still be stored by SciCat later.

        True when no answer came (a timeout, a reset connection) or a gateway stopped
        waiting for SciCat (502, 504); an answer from SciCat itself ends its request.
        """
        return self.status is None or self.status in (502, 504)

    @property
    def outage(self) -> bool:
        """Whether this error looks like SciCat itself being down, not a problem of one request.

        No answer (refused, reset, timed out) or a gateway's 502/503/504. A 500 or 429 is an
        answer from a running SciCat: the file's own failure (or a rate limit), counted.
        """
        return self.status is None or self.status in OUTAGE_STATUSES


class QueueUnavailable(TransientError):
    """Redis, the broker and job store, cannot be reached."""


class SpoolFull(QueueUnavailable):
    """Redis cannot take a request and the local spool is full or cannot be written."""


class ConfigError(PermanentError):
    """The configuration file or environment is invalid."""


class SchemaError(PermanentError):
    """A schema file is invalid or cannot be applied."""


class NoMatchingSchema(SchemaError):
    """No schema selects this file and no fallback schema is configured."""


class VariableError(PermanentError):
    """A schema variable could not be computed from its source."""


class InputFileError(PermanentError):
    """The data file cannot be used: missing, empty, not HDF5, refused path."""


class NexusReadError(InputFileError):
    """A NeXus path is missing or holds a value of an unusable type."""


class ScicatRejected(PermanentError):
    """SciCat answered 4xx; ``status`` and the server's ``detail`` are kept."""

    def __init__(self, message: str, *, status: int, detail: str = "", **where: str | None) -> None:
        super().__init__(message, **where)
        self.status = status
        self.detail = detail


class ScicatAuthError(ScicatRejected):
    """Login refused, or SciCat treated our token as anonymous (its 403 for a bad token)."""


class IdempotencyConflict(PermanentError):
    """A dataset with our pid exists in SciCat but was not made from this file."""


class CannotVerify(PermanentError):
    """SciCat answers 403 to a read the exactly-once check needs: writing could duplicate.

    A 403 is never "absent" and never "ours": an account that may create a dataset but not
    read it back cannot tell a rerun from a first run, so nothing is written.
    """


def is_transient(error: BaseException) -> bool:
    """Whether an error is worth retrying; unknown exceptions are not."""
    return isinstance(error, TransientError)

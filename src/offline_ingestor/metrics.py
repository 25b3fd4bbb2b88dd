"""Prometheus metrics of the worker (prefork: ``prometheus_client`` multiprocess mode).

Children count; the worker's main process serves them (``worker/metrics_server.py``, which
adds what it reads from Redis at scrape time). This module is a leaf: it imports nothing of
the package but the config, so the SciCat client and the steps can count without Redis.

Metrics never stop ingestion: a metrics folder that cannot be made, or any error inside
``prometheus_client``, turns metrics off with one warning and the files go on.
Every name starts with ``offline_ingestor_``; ``docs/operations.md`` lists them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "CONFLICT_KINDS",
    "ERROR_KINDS",
    "OUTCOMES",
    "PREFIX",
    "count_conflict",
    "count_failed",
    "count_file",
    "count_retry",
    "count_scicat_error",
    "init_series",
    "never_fail",
    "observe_step",
    "prepare_multiprocess_dir",
    "series",
]

PREFIX = "offline_ingestor_"
OUTCOMES = ("created", "duplicate", "failed", "refused")
#: SciCat errors by kind (``count_scicat_error``): what the alert on SciCat errors watches.
ERROR_KINDS = ("connection", "timeout", "server", "rate_limited", "client")
#: What SciCat already holds that a file's ingestion refuses (ingest/writes.py): admin work.
CONFLICT_KINDS = ("duplicate-blocks", "pid-not-findable", "duplicate-jobs")
#: Objects a file's ingestion makes besides its dataset (``count_object``): by kind and outcome.
OBJECT_KINDS = ("job", "sample")
OBJECT_OUTCOMES = ("created", "found")
STEP_NAMES = ("select-schema", "extract", "build-dataset", "post-dataset", "post-origdatablock", "post-job")
#: Up to 4 h: a step hashing a multi-terabyte file may run for hours.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400)
_TEMP_PREFIX = "oi-metrics-"
_OWNED = re.compile(rf"^{_TEMP_PREFIX}(\d+)-")
_STATE: dict[str, Any] = {"disabled": False, "metrics": None}
F = TypeVar("F", bound=Callable[..., Any])


def _warn_and_disable(what: str, exc: BaseException) -> None:
    if not _STATE["disabled"]:
        from .logs import get_logger

        get_logger("offline_ingestor.metrics").warning(
            "metrics.disabled", reason=f"{what}: {type(exc).__name__}: {exc}", consequence="no metrics"
        )
    _STATE["disabled"] = True


def never_fail(function: F) -> F:
    """Metrics are an aid: an error in them is logged once and never reaches the step."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # No folder: a command (ingest-now, the drop-in) or a worker that could make none
        # (prepare_multiprocess_dir warned once then). Either way there is nothing to count.
        if _STATE["disabled"] or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return None
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            _warn_and_disable(function.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_dirs(parent: str | None = None) -> int:
    """Remove the ``oi-metrics-<pid>-*`` folders of workers that are gone; how many."""
    removed = 0
    parent = parent or tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            match = _OWNED.match(entry.name)
            if match and entry.is_dir() and not _alive(int(match.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    return removed


def _remove_if_owner(directory: str, owner: int) -> None:
    # Forked pool processes inherit atexit hooks; only the main process removes the folder.
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)


def prepare_multiprocess_dir() -> str | None:
    """Point prometheus_client at a shared folder; must run before it is imported.

    ``$PROMETHEUS_MULTIPROC_DIR`` is created when missing; without it a folder of our own
    is made in the temp dir and removed when this process exits (stale ones of dead workers
    are removed here too). ``None``, with one warning, when no folder can be had.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(f"{directory} is not writable")
        else:
            remove_stale_dirs()
            directory = tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-")
            owner = os.getpid()
            atexit.register(_remove_if_owner, directory, owner)
    except OSError as exc:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        _warn_and_disable(f"PROMETHEUS_MULTIPROC_DIR {directory}", exc)
        return None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    _use_multiprocess_values()
    return directory


def _use_multiprocess_values() -> None:
    # prometheus_client picks its value class when first imported. `celery -A ... worker`
    # loads every `celery.commands` entry point first, and Flower's imports prometheus_client:
    # without this, values would stay per process and the scrape would show none of them.
    import sys

    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


def series() -> dict[str, Any]:
    from prometheus_client import Counter, Histogram

    if _STATE["metrics"] is None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Without the folder each process would count alone, invisibly: no metrics.
            raise RuntimeError("PROMETHEUS_MULTIPROC_DIR is not set")
        _STATE["metrics"] = {
            "files": Counter(
                f"{PREFIX}files_total",
                "Files finished, by outcome and schema",
                ["outcome", "schema", "schema_id"],
            ),
            "retries": Counter(f"{PREFIX}retries_total", "Step retries after transient errors", ["step"]),
            "scicat_errors": Counter(
                f"{PREFIX}scicat_errors_total", "Failed SciCat requests, by kind", ["kind"]
            ),
            "conflicts": Counter(
                f"{PREFIX}scicat_conflicts_total",
                "Files refused for what SciCat already holds (duplicate blocks, a pid a rerun cannot find)",
                ["kind"],
            ),
            "objects": Counter(
                f"{PREFIX}scicat_objects_total",
                "Jobs (post-job) and samples (create_missing) created, or found already there",
                ["kind", "outcome"],
            ),
            "steps": Histogram(f"{PREFIX}step_seconds", "Step duration", ["step"], buckets=STEP_BUCKETS),
        }
    return _STATE["metrics"]  # type: ignore[no-any-return]


#: Schema id → name for the ``schema`` label: upstream's ids are bare UUIDs, which say nothing
#: on a dashboard. Filled wherever schemas are loaded (:func:`name_schemas`); an id not named
#: here is its own name.
_SCHEMA_NAMES: dict[str, str] = {}


def name_schemas(names: Mapping[str, str]) -> None:
    """Remember the names of loaded schemas (id → name) for the ``schema`` label."""
    _SCHEMA_NAMES.update(names)


def _schema_labels(schema_id: str | None) -> dict[str, str]:
    """``schema`` (the name, what people read) and ``schema_id`` (what tells two apart)."""
    if not schema_id:
        return {"schema": "unknown", "schema_id": "unknown"}
    return {"schema": _SCHEMA_NAMES.get(schema_id, schema_id), "schema_id": schema_id}


@never_fail
def init_series(schemas: Mapping[str, str]) -> None:
    """Create every series known at start at 0, so that alerts see 0 rather than no data.

    ``schemas``: the loaded schemas, id → name.
    """
    name_schemas(schemas)
    metrics = series()
    for schema_id in [*schemas, None]:
        for outcome in OUTCOMES:
            metrics["files"].labels(outcome=outcome, **_schema_labels(schema_id))
    for step in STEP_NAMES:
        metrics["retries"].labels(step=step)
        metrics["steps"].labels(step=step)
    for kind in ERROR_KINDS:
        metrics["scicat_errors"].labels(kind=kind)
    for kind in CONFLICT_KINDS:
        metrics["conflicts"].labels(kind=kind)
    for kind in OBJECT_KINDS:
        for outcome in OBJECT_OUTCOMES:
            metrics["objects"].labels(kind=kind, outcome=outcome)


@never_fail
def observe_step(step: str, seconds: float) -> None:
    series()["steps"].labels(step=step).observe(seconds)


@never_fail
def count_file(outcome: str, schema: str | None) -> None:
    series()["files"].labels(outcome=outcome, **_schema_labels(schema)).inc()


def count_failed(schema: str | None) -> None:
    """A file went to the failed registry; ``schema`` is its schema id when one was selected."""
    count_file("failed", schema)


@never_fail
def count_retry(step: str) -> None:
    series()["retries"].labels(step=step).inc()


@never_fail
def count_scicat_error(kind: str) -> None:
    """One failed SciCat request; ``kind`` is one of :data:`ERROR_KINDS`."""
    series()["scicat_errors"].labels(kind=kind if kind in ERROR_KINDS else "client").inc()


@never_fail
def count_conflict(kind: str) -> None:
    """A file refused for what SciCat already holds; ``kind`` is one of :data:`CONFLICT_KINDS`."""
    series()["conflicts"].labels(kind=kind).inc()


@never_fail
def count_object(kind: str, outcome: str) -> None:
    """A job or sample (:data:`OBJECT_KINDS`) was ``created`` or ``found`` (:data:`OBJECT_OUTCOMES`)."""
    series()["objects"].labels(kind=kind, outcome=outcome).inc()

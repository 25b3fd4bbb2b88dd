"""Audit output: the summary table, and the Prometheus gauges of the last audit."""

from __future__ import annotations

from pathlib import Path

from .classify import CLASSES
from .run import AuditOutcome

__all__ = ["summary", "write_metrics"]


def summary(outcome: AuditOutcome) -> str:
    """Counts per class (all classes, zeros too), then per schema, then what needs a human."""
    counts = outcome.counts()
    lines = [f"{'class':<18} {'files':>8}"]
    lines += [f"{cls:<18} {counts.get(cls, 0):>8}" for cls in CLASSES]
    lines.append(f"{'total files':<18} {outcome.total:>8}")
    schemas = outcome.by_schema()
    if schemas:
        lines += ["", "per schema:"]
        for schema, table in sorted(schemas.items()):
            parts = ", ".join(f"{cls} {table[cls]}" for cls in CLASSES if table.get(cls))
            lines.append(f"  {schema}: {parts}")
    admin = [(r.file, call) for r in outcome.problems for call in r.admin]
    admin += [(o.pid, call) for o in outcome.orphans for call in o.admin]
    if admin:
        lines += ["", "needs an admin (the audit never deletes):"]
        lines += [f"  {what}: {call}" for what, call in admin]
    for note in outcome.notes:
        lines.append(f"note: {note}")
    for action in outcome.actions:
        lines.append(f"done: {action}")
    lines.append(f"{outcome.total} files in {outcome.seconds:.1f} s, {outcome.scicat_calls} SciCat requests")
    return "\n".join(lines)


def write_metrics(outcome: AuditOutcome, path: Path) -> None:
    """Gauges in the Prometheus text format (node_exporter's textfile collector reads it).

    A separate registry: the audit is a one-shot command, not the worker's metrics server.
    """
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    files = Gauge(
        "offline_ingestor_audit_files",
        "Files (orphan: datasets) per class in the last audit",
        ["class"],
        registry=registry,
    )
    counts = outcome.counts()
    for cls in CLASSES:
        files.labels(cls).set(counts.get(cls, 0))
    Gauge(
        "offline_ingestor_audit_last_run_timestamp_seconds", "When the last audit ended", registry=registry
    ).set_to_current_time()
    Gauge(
        "offline_ingestor_audit_scicat_requests", "SciCat requests of the last audit", registry=registry
    ).set(outcome.scicat_calls)
    write_to_textfile(str(path), registry)

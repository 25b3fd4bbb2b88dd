"""``offline-ingestor audit``: is every file on disk in SciCat, once and whole?

``walk`` finds the files, ``identity`` works out each file's dataset as ingestion would,
``scicat_view`` reads SciCat in batches, ``classify`` decides each file's class, ``run``
ties them together (checkpoint, progress), ``actions`` does ``--enqueue-missing`` and
``--repair``, ``report`` prints the table, JSON lines and Prometheus gauges.
"""

from .classify import CLASSES, FileResult, OrphanResult
from .run import AuditOptions, AuditOutcome, run_audit

__all__ = ["CLASSES", "AuditOptions", "AuditOutcome", "FileResult", "OrphanResult", "run_audit"]

"""The audit itself: walk, identify, read SciCat and Redis in batches, classify, resume."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import ConfigError
from ..logs import get_logger
from .admin import delete_dataset_call
from .classify import FileResult, OrphanResult, classify, classify_unidentified, file_stat
from .identity import CachingClient, Identity, absolute_entry_path, audit_runtime, identify
from .records import RedisStates
from .scicat_view import ScicatView
from .walk import audit_roots, walk

if TYPE_CHECKING:
    from ..ingest.pid_memo import PidMemo
    from ..queue.job_store import JobStore

__all__ = ["AuditOptions", "AuditOutcome", "run_audit"]

log = get_logger("offline_ingestor.audit")
#: Files identified before SciCat is asked about them together.
CHUNK = 500


@dataclass
class AuditOptions:
    paths: list[str] = field(default_factory=list)
    since: dt.datetime | None = None
    checksums: bool = False
    #: JSON-lines file of finished files; an audit given the same file resumes after them.
    checkpoint: Path | None = None
    #: A previous audit's ``--json`` output or checkpoint: files it found ``ingested`` whose
    #: size/mtime and dataset ``updatedAt`` are unchanged are not read nor asked about again.
    previous: Path | None = None
    progress: bool = False
    use_redis: bool = True


@dataclass
class Tally:
    """What an audit keeps in memory: counts, and only the files that are not ``ingested``.

    A million-file tree must not hold a million results; ``pids`` and ``files`` (for the
    orphan check) are plain strings.
    """

    counts: Counter[str] = field(default_factory=Counter)
    schemas: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[FileResult] = field(default_factory=list)
    pids: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)

    def add(self, result: FileResult) -> None:
        self.counts[result.cls] += 1
        self.schemas.setdefault(result.schema or "-", Counter())[result.cls] += 1
        self.files.add(result.file)
        if result.pid:
            self.pids.add(result.pid)
        if result.cls != "ingested":
            self.problems.append(result)


@dataclass
class AuditOutcome:
    tally: Tally
    orphans: list[OrphanResult]
    scicat_calls: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[FileResult]:
        """Every file that is not ``ingested`` (what the actions work on)."""
        return self.tally.problems

    @property
    def total(self) -> int:
        return sum(self.tally.counts.values())

    def counts(self) -> Counter[str]:
        counts = Counter(self.tally.counts)
        counts["orphan"] += len(self.orphans)
        return counts

    def by_schema(self) -> dict[str, Counter[str]]:
        return self.tally.schemas

    @property
    def clean(self) -> bool:
        """Every file ``ingested`` and no orphan: exit code 0."""
        return not self.orphans and not self.tally.problems


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Checkpoint:
    """Append-only JSON lines: a header naming the audit, then one finished file per line."""

    def __init__(self, path: Path | None, header: dict[str, Any]) -> None:
        self.path = path
        self.done: dict[str, FileResult] = {}
        if path is None:
            return
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            if lines and json.loads(lines[0]) != header:
                raise ConfigError(f"checkpoint {path} belongs to another audit (roots/options differ)")
            for line in lines[1:]:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash: that file is audited again
                self.done[item["file"]] = _from_json(item)
        else:
            path.write_text(json.dumps(header) + "\n", encoding="utf-8")
        self._handle = path.open("a", encoding="utf-8")

    def add(self, result: FileResult) -> None:
        if self.path is not None:
            self._handle.write(json.dumps(result.to_json()) + "\n")

    def flush(self) -> None:
        if self.path is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())


def _from_json(item: dict[str, Any]) -> FileResult:
    return FileResult(
        file=item["file"],
        cls=item["class"],
        schema=item.get("schema", ""),
        key=item.get("key", ""),
        pid=item.get("pid"),
        reason=item.get("reason", ""),
        block_ids=item.get("block_ids", []),
        admin=item.get("admin", []),
        stat=item.get("stat", ""),
        updated_at=item.get("updated_at", ""),
    )


def _load_previous(path: Path | None) -> dict[str, FileResult]:
    """``ingested`` results of an earlier audit (JSON lines; other lines are skipped)."""
    found: dict[str, FileResult] = {}
    if path is None:
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("class") == "ingested" and item.get("file"):
            found[item["file"]] = _from_json(item)
    return found


def _unchanged(path: Path, old: FileResult | None, view: ScicatView) -> FileResult | None:
    """The previous result when neither the file nor its dataset changed since."""
    if old is None or not old.pid or not old.stat or not old.updated_at:
        return None
    dataset = view.datasets.get(old.pid)
    if dataset is None or str(dataset.get("updatedAt") or "") != old.updated_at:
        return None
    if file_stat(str(path)) != old.stat:
        return None
    return old


class _Progress:
    """A one-line counter on stderr when it is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self.count = 0

    def tick(self, count: int) -> None:
        self.count += count
        if self.enabled:
            rate = self.count / max(time.monotonic() - self.started, 1e-6)
            print(f"\raudit: {self.count} files ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def _dataset_for(identity: Identity, view: ScicatView) -> dict[str, Any] | None:
    """The dataset ingestion would find: by pid, else by the metadata key in its folder."""
    if identity.pid:
        return view.datasets.get(identity.pid)
    if identity.metadata_value is None:
        return None
    for doc in view.in_folders([identity.source_folder]):
        value = (doc.get("scientificMetadata") or {}).get(identity.metadata_key)
        value = value.get("value") if isinstance(value, dict) else value
        if value == identity.metadata_value:
            return doc
    return None


def _legacy_dataset(identity: Identity, view: ScicatView, config: Config) -> dict[str, Any] | None:
    """The file's dataset under the pid derived before issue 12 (path + size + mtime), if any."""
    from ..ingest.legacy_pid import legacy_pid

    prefix = config.dataset.dataset_pid_prefix
    old = legacy_pid(identity.file, identity.pid, identity.job.get("job_id"), prefix)
    if old is None:
        return None
    view.fetch_pids([old])
    return view.datasets.get(old)


def _kept_pids(config: Config, store: JobStore | None) -> PidMemo:
    """Where reruns look for a pid SciCat rewrote: the worker's Redis (and the commands' files
    it falls back to), or the commands' files alone when Redis is not read."""
    from ..ingest.pid_memo import FileMemo

    if store is None:
        return FileMemo(config.ingestion.file_handling, writable=False)
    from ..queue.pid_memo import RedisPidMemo

    return RedisPidMemo(store.redis, config)


def _mapped(identity: Identity, old: str, config: Config) -> bool:
    """Whether ``--map-legacy-pids`` kept the old pid beside the hash file (reruns find it)."""
    from ..ingest.pid_memo import FileMemo

    memo = FileMemo(config.ingestion.file_handling, writable=False)
    return bool(identity.pid) and memo.recall(identity.job, str(identity.pid)) == old


def _legacy_result(result: FileResult, identity: Identity) -> None:
    """A file catalogued under its old derived pid: a rerun would make a second dataset."""
    result.reason = (
        f"catalogued under its pre-issue-12 pid {result.pid} (path + size + mtime); ingestion now "
        f"sends {identity.pid} and would catalogue it again: map it once, before any rerun"
        + (f"; its dataset is {result.cls}" if result.cls != "ingested" else "")
    )
    result.cls = "legacy-pid"
    result.admin = [f"offline-ingestor audit --map-legacy-pids {identity.file}"]


def _ignore(_: FileResult | OrphanResult) -> None:
    """No per-file output (the summary table only)."""


def run_audit(
    config: Config,
    options: AuditOptions,
    *,
    emit: Callable[[FileResult | OrphanResult], None] | None = None,
) -> AuditOutcome:
    """Audit the roots; ``emit`` is called with each result as soon as it is known."""
    started = time.monotonic()
    rt = audit_runtime(config, checksums=options.checksums)
    roots = audit_roots(options.paths, config)
    view = ScicatView(rt.scicat, config.ingestion.check_if_dataset_exists_by_metadata_key)
    store = None
    if options.use_redis:
        from ..queue.job_store import JobStore

        store = JobStore.for_config(config)
    states = RedisStates.load(store)
    notes = [] if states.available else [f"Redis records not read ({states.problem})"]
    rt.pid_memo = _kept_pids(config, store if states.available else None)
    header = {
        "roots": [str(root) for root in roots],
        "since": options.since.isoformat() if options.since else None,
        "checksums": options.checksums,
    }
    checkpoint = _Checkpoint(options.checkpoint, header)
    previous = _load_previous(options.previous)
    progress = _Progress(options.progress)
    tally = Tally()
    report = emit or _ignore
    for result in checkpoint.done.values():
        tally.add(result)
        report(result)  # a resumed audit still reports every file
    for root in roots:
        view.list_prefix(str(root if root.is_dir() else root.parent))
    for chunk in _chunks(
        (p for p in walk(roots, config, options.since) if str(p) not in checkpoint.done), CHUNK
    ):
        if previous:
            view.fetch_pids(old.pid for path in chunk if (old := previous.get(str(path))) and old.pid)
        fresh = []
        for path in chunk:
            kept = _unchanged(path, previous.get(str(path)), view)
            if kept is None:
                fresh.append(path)
                continue
            tally.add(kept)
            checkpoint.add(kept)
            report(kept)
        identified = [identify(rt, path) for path in fresh]
        known = [found for found in identified if isinstance(found, Identity)]
        for found in known:
            view.list_folder(found.source_folder)
        view.fetch_pids(found.pid for found in known if found.pid)
        for item in identified:
            if isinstance(item, Identity):
                dataset = _dataset_for(item, view)
                legacy = None if dataset else _legacy_dataset(item, view, config)
                dataset = dataset or legacy
                pid = str(dataset["pid"]) if dataset else ""
                blocks = view.blocks(pid) if dataset else []
                jobs = _jobs_of(rt.scicat, item) if dataset and item.job_lookup else None
                result = classify(item, dataset, blocks, states.state(item.key, item.file), jobs)
                if legacy is not None and not _mapped(item, str(legacy["pid"]), config):
                    _legacy_result(result, item)
                _add_admin_calls(result, blocks, rt.scicat.settings)
                view.forget(pid)  # blocks are needed once per file; memory stays flat
            else:
                result = classify_unidentified(item, states.state(item.key, item.file))
            tally.add(result)
            checkpoint.add(result)
            report(result)
        checkpoint.flush()
        progress.tick(len(chunk))
    progress.close()
    orphans = _orphans(tally, view, roots, rt.scicat.settings, whole_tree=options.since is None)
    for orphan in orphans:
        report(orphan)
    sent = rt.scicat.sent if isinstance(rt.scicat, CachingClient) else view.calls
    outcome = AuditOutcome(tally, orphans, sent, time.monotonic() - started, notes)
    log.info(
        "audit.done",
        files=outcome.total,
        orphans=len(orphans),
        scicat_calls=outcome.scicat_calls,
        duration_ms=round(outcome.seconds * 1000, 1),
        **{cls.replace("-", "_"): n for cls, n in outcome.counts().items()},
    )
    return outcome


def _jobs_of(client: Any, item: Identity) -> list[dict[str, Any]]:
    """SciCat's jobs carrying the file's marker (one GET per file whose schema has a job)."""
    assert item.job_lookup is not None
    found: list[dict[str, Any]] = client.find_jobs(item.job_lookup)
    return found


def _add_admin_calls(result: FileResult, blocks: list[dict[str, Any]], settings: Any) -> None:
    from .admin import delete_block_call

    if result.cls == "duplicate-blocks":
        # Keep the oldest block; the later ones are the duplicates.
        ordered = sorted(
            (block for block in blocks if str(block.get("_id") or block.get("id")) in result.block_ids),
            key=lambda block: str(block.get("createdAt") or ""),
        )
        result.admin = [delete_block_call(settings, str(b.get("_id") or b.get("id"))) for b in ordered[1:]]
        result.admin.append(f"offline-ingestor audit --repair {result.file}   # then fix the totals")


def _orphans(
    tally: Tally, view: ScicatView, roots: list[Path], settings: Any, *, whole_tree: bool
) -> list[OrphanResult]:
    """Datasets under the roots no audited file maps to whose data file is gone (or remapped)."""
    matched, audited = tally.pids, tally.files
    found: list[OrphanResult] = []
    for doc in view.in_folders(str(root) for root in roots):
        pid = str(doc.get("pid"))
        if pid in matched:
            continue
        folder = str(doc.get("sourceFolder") or "")
        blocks = view.blocks(pid)
        files = [
            absolute_entry_path(str(item.get("path")), folder)
            for block in blocks
            for item in (block.get("dataFileList") or [])[:1]
        ]
        if not files:
            if not whole_tree:
                continue
            reason, file = "dataset has no origdatablock and no audited file maps to it", ""
        elif not any(os.path.exists(path) for path in files):
            reason, file = "its data file no longer exists", files[0]
        elif whole_tree and any(path in audited for path in files):
            reason = "its file is on disk but ingestion now maps it to another dataset"
            file = next(path for path in files if path in audited)
        else:
            continue
        if not any(Path(file).is_relative_to(root) for root in roots) and file:
            continue  # a file outside what this audit looked at: not ours to judge
        found.append(OrphanResult(pid, folder, file, reason, [delete_dataset_call(settings, pid)]))
    return found

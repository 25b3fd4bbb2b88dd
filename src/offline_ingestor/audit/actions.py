"""``--enqueue-missing`` and ``--repair``: the writes an audit may make, never a deletion.

* missing / failed files are enqueued through the producer: the idempotency key makes a
  file already queued or running a no-op, so a second audit never doubles work; a file
  Redis says is done but whose dataset this audit did not find in SciCat is re-run
  (forced), with the same SciCat look-ups as any re-run;
* ``totals-mismatch``: the dataset's ``size``/``numberOfFiles`` are PATCHed to the sums over
  its origdatablocks (what SciCat's ``$inc`` would have left had it not crashed);
* ``no-files``: the file goes through the normal chain again (queue, or in-process when
  the queue is off); ``post-dataset`` finds the dataset and ``post-origdatablock`` attaches
  the block.
"""

from __future__ import annotations

from ..config import Config
from ..errors import IngestError
from ..ingest.job import new_job
from ..logs import get_logger
from ..scicat import ScicatClient
from ..scicat.totals import check_totals, repair_totals
from .classify import FileResult

__all__ = ["enqueue_missing", "map_legacy_pids", "repair"]

log = get_logger("offline_ingestor.audit")


def enqueue_missing(config: Config, results: list[FileResult]) -> list[str]:
    """Enqueue ``missing`` and ``failed`` files; one line per file saying what happened."""
    from ..producer import submit_job
    from ..queue.job_store import JobStore

    store = JobStore.for_config(config)
    done = []
    for result in results:
        if result.cls not in ("missing", "failed"):
            continue
        try:
            job = new_job(result.file, config.ingestion.allowed_data_roots)
            outcome = submit_job(job, config, store=store)
            if outcome.status == "already done" and result.cls == "missing":
                # Redis says done, SciCat (this audit's view) has no dataset: it was deleted.
                # A forced re-run: post-dataset looks the pid up again first (rerun rules).
                outcome = submit_job(job, config, store=store, force=True)
                log.warning("audit.reingest", file=result.file, key=outcome.key, status=outcome.status,
                            reason="Redis says done but SciCat has no dataset")  # fmt: skip
            done.append(f"enqueue {result.file}: {outcome.status}")
            log.info("audit.enqueued", file=result.file, key=outcome.key, status=outcome.status)
        except IngestError as exc:
            done.append(f"enqueue {result.file}: error: {exc.message}")
    return done


def repair(config: Config, results: list[FileResult], client: ScicatClient | None = None) -> list[str]:
    """Fix ``totals-mismatch`` in place; send files lacking blocks, a job or a sample through the chain."""
    client = client or ScicatClient(config.scicat)
    done = []
    for result in results:
        try:
            if result.cls == "totals-mismatch" and result.pid:
                done.append(_patch_totals(client, result.pid))
            elif result.cls in ("no-files", "job-missing", "sample-missing"):
                done.append(_attach_block(config, result))
        except IngestError as exc:
            done.append(f"repair {result.file}: error: {exc.message}")
    return done


def _patch_totals(client: ScicatClient, pid: str) -> str:
    fixed = repair_totals(client, check_totals(client, pid))
    log.info("audit.repaired_totals", dataset_pid=pid, size=fixed.size, number_of_files=fixed.number_of_files)
    return f"patch {pid}: size={fixed.size} numberOfFiles={fixed.number_of_files}"


def _attach_block(config: Config, result: FileResult) -> str:
    job = new_job(result.file, config.ingestion.allowed_data_roots)
    if config.queue.enabled:
        from ..producer import submit_job

        # force: SciCat shows the chain did not finish, whatever an old record says.
        outcome = submit_job(job, config, force=True)
        return f"requeue {result.file} ({result.cls}): {outcome.status}"
    from ..ingest.pipeline import ingest
    from ..ingest.runtime import Runtime

    final = ingest(Runtime.from_config(config), job)
    return f"ingest {result.file} ({result.cls}): block {final.get('origdatablock_id')} on {final.get('pid')}"


def map_legacy_pids(config: Config, results: list[FileResult]) -> list[str]:
    """Keep each ``legacy-pid`` file's old pid where reruns look (one-time migration, issue 25).

    Written to Redis (``queue.enabled``: the worker's memo) and beside the hash file
    (``save_file_hash``: ``ingest-now``/the drop-in's, which the worker reads too). A file
    kept nowhere is reported: a rerun of it would catalogue it again.
    """
    from ..ingest.legacy_pid import derived_pid
    from ..ingest.pid_memo import FileMemo, PidMemo

    memos: list[tuple[str, PidMemo]] = [("file", FileMemo(config.ingestion.file_handling))]
    if config.queue.enabled:
        from ..queue.job_store import JobStore
        from ..queue.pid_memo import RedisPidMemo

        memos.append(("redis", RedisPidMemo(JobStore.for_config(config).redis, config)))
    done = []
    for result in results:
        if result.cls != "legacy-pid" or not result.pid:
            continue
        sent = derived_pid(result.file, config.dataset.dataset_pid_prefix)
        kept = [name for name, memo in memos if memo.keep({"file": result.file}, sent, result.pid)]
        log.info(
            "audit.mapped_legacy_pid", file=result.file, dataset_pid=result.pid, requested_pid=sent, kept=kept
        )
        nowhere = "nowhere (set save_file_hash or queue.enabled): do not rerun it"
        where = " and ".join(kept) if kept else nowhere
        done.append(f"map {result.file}: {sent} -> {result.pid} kept in {where}")
    return done

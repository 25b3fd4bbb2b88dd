"""The two SciCat writes of an ingestion, exactly once even when every Redis record is lost.

``post_dataset`` and ``post_origdatablock`` (steps 4 and 5, re-exported by ``steps``) read
SciCat before writing and only write what it does not hold yet. That needs answers they can
trust, so:

* a **403 is never "absent" and never "ours"**: an account that may create a dataset but not
  read it (only in ``CREATE_DATASET_PRIVILEGED_GROUPS``) cannot tell a rerun from a first run;
  such files are refused (``CannotVerify``) before the first write, not written twice;
* everything checkable is checked **before the first write** (read-back rights, both
  ``isValid`` calls when ``validate_before_write``), so a refusal leaves nothing half-written;
* an answer that cannot be read (HTML from a proxy, no pid) is transient: the retry looks the
  dataset up first, as after a connection reset;
* a 201 carrying another pid than the one sent is followed, and later runs find the dataset
  through the metadata key when the pid look-up says 404, else through the pid kept where
  reruns look (``ingest/pid_memo.py``); when it could be kept nowhere, the file ends in a
  conflict once its block is attached (never exit 0 with a rerun that would duplicate it);
* when the block is found already there (a retry or rerun), the dataset's ``size``/
  ``numberOfFiles`` are checked against its blocks and repaired (SciCat updates them in a
  second write, after the block and before its 201, that a crash can skip);
* a 201 for a pid we sent does not mean "no block yet": SciCat's dataset DELETE leaves the
  dataset's origdatablocks behind, and they come back with a dataset created under the same
  pid. Only a pid SciCat made itself is certainly new;
* two blocks listing one file are a conflict for an admin, never a sum to repair totals to.
"""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..errors import (
    CannotVerify,
    IdempotencyConflict,
    IngestError,
    ScicatAuthError,
    ScicatRejected,
    ScicatUnavailable,
)
from ..files.filelist import refuse_changed_file
from ..logs import get_logger
from ..scicat.rights import FIX, AccountRights, account_rights, refuse_unreadable
from ..scicat.totals import check_totals, duplicated_files, duplicates_conflict, repair_totals
from .job import Job
from .runtime import Runtime
from .samples import ensure_samples

__all__ = ["identity_difference", "post_dataset", "post_origdatablock"]

log = get_logger("offline_ingestor.writes")

_IDENTITY_FIELDS = ("sourceFolder", "ownerGroup", "type")


def _job_id(dataset: dict[str, Any]) -> Any:
    item = (dataset.get("scientificMetadata") or {}).get("job_id")
    return item.get("value") if isinstance(item, dict) else item


def identity_difference(existing: dict[str, Any], dataset: dict[str, Any]) -> str | None:
    """The first identity field where SciCat's dataset differs from ours, with both values."""
    for key in _IDENTITY_FIELDS:
        if key in dataset and existing.get(key) != dataset.get(key):
            return f"{key} is {existing.get(key)!r} in SciCat but {dataset.get(key)!r} for this file"
    ours, theirs = _job_id(dataset), _job_id(existing)
    if ours is not None and theirs is not None and ours != theirs:
        return f"scientificMetadata.job_id is {theirs!r} in SciCat but {ours!r} for this file"
    return None


def _rights(rt: Runtime) -> AccountRights:
    return account_rights(rt.scicat)


def _unverifiable(rt: Runtime, what: str, pid: str, *, half_written: bool = False) -> CannotVerify:
    rights = _rights(rt)
    rights.reads_all = False  # a 403 on a read: this account does not read every dataset
    if half_written:
        hint = f"dataset {pid} may lack its files; {FIX}, then requeue: the rerun attaches them"
    else:
        hint = (
            f"nothing was written now; dataset {pid} exists: if an earlier run of this file made it, "
            f"it may lack its files or its size/numberOfFiles (check it as an admin); {FIX}, then "
            "requeue: the rerun completes or finds it"
        )
    return CannotVerify(
        f"SciCat answered 403 to {what} of dataset {pid}: {rights.describe()}. A 403 is not "
        f"'absent' and not 'ours', so this file is not written (it could duplicate). {hint}",
        hint=hint,
    )


def _lookup(rt: Runtime, pid: str) -> dict[str, Any] | None:
    """GET a dataset: None only for 404. 403 raises ``CannotVerify``."""
    try:
        found = rt.scicat.get_dataset(pid)
    except ScicatAuthError:
        raise
    except ScicatRejected as exc:
        if exc.status == 403:
            raise _unverifiable(rt, "the read", pid) from None
        raise
    if found is not None and not isinstance(found, dict):
        raise ScicatUnavailable(f"SciCat GET of dataset {pid} answered {type(found).__name__}, not a dataset")
    if found is not None and isinstance(rt.scicat.rights, AccountRights) and rt.scicat.rights.foreign(found):
        rt.scicat.rights.reads_all = True
    return found


def _metadata_key_value(rt: Runtime, job: Job) -> Any:
    """The value the job-id search looks for, or None when that search is off or has none."""
    if not rt.config.ingestion.check_if_dataset_exists_by_metadata:
        return None
    key = rt.config.ingestion.check_if_dataset_exists_by_metadata_key
    item = job["dataset"].get("scientificMetadata", {}).get(key, {})
    return item.get("value") if isinstance(item, dict) else None


def _find_by_metadata(rt: Runtime, job: Job) -> dict[str, Any] | None:
    value = _metadata_key_value(rt, job)
    if value is None:
        return None
    key = rt.config.ingestion.check_if_dataset_exists_by_metadata_key
    found = rt.scicat.find_datasets({f"scientificMetadata.{key}.value": value})
    return found[0] if found and isinstance(found[0], dict) else None


def _kept_pid(rt: Runtime, job: Job) -> str | None:
    """The pid SciCat stored this file's dataset under when it rewrote ours, if one was kept."""
    pid = job["dataset"].get("pid")
    return rt.pid_memo.recall(job, str(pid)) if pid and rt.pid_memo is not None else None


def _existing(rt: Runtime, job: Job) -> dict[str, Any] | None:
    """SciCat's dataset for this file, if any: by pid, then by the metadata key, then the kept pid."""
    pid = job["dataset"].get("pid")
    if pid and rt.config.ingestion.check_if_dataset_exists_by_pid:
        found = _lookup(rt, pid)
        if found is not None:
            return found
    # Also after a 404 by pid: a SciCat (or proxy) that rewrote our pid on create is found here.
    found = _find_by_metadata(rt, job)
    if found is None and (kept := _kept_pid(rt, job)):
        found = _lookup(rt, kept)  # None: deleted since, so creating it again is right
    return found


def _found(job: Job, existing: dict[str, Any], pid: Any) -> Job:
    """The job for a dataset SciCat already holds; its totals go on to the block step.

    Totals that are not whole numbers are left out: the block step then reads the dataset
    again (``check_totals``), which reports them.
    """
    totals = {key: existing.get(key) or 0 for key in ("size", "numberOfFiles")}
    found: Job = {**job, "pid": str(existing.get("pid", pid)), "dataset_created": False}
    if all(isinstance(value, int) for value in totals.values()):
        found["dataset_totals"] = totals
    return found


def _ours(existing: dict[str, Any], dataset: dict[str, Any]) -> None:
    difference = identity_difference(existing, dataset)
    if difference is not None:
        raise IdempotencyConflict(
            f"SciCat already has dataset {existing.get('pid')} and it is not this file's: "
            f"{difference}; refusing to attach files to it",
            hint="nothing was written; give this file another pid or remove the other dataset",
        )


def _is_valid(
    rt: Runtime, endpoint: str, payload: dict[str, Any], what: str, *, base: str | None = None
) -> None:
    valid, reason = rt.scicat.is_valid(endpoint, payload, base=base)
    if valid:
        return
    if not reason:
        # SciCat v4's isValid says only {"valid": false}.
        reason = (
            "SciCat gave no reason (its v4 isValid answers only valid: false); run "
            "`offline-ingestor ingest-now --dry-run FILE` to see the payload, or set "
            "scicat.api_version: v3, whose isValid names the field"
        )
    raise ScicatRejected(f"SciCat isValid rejected the {what}: {reason}", status=400, detail=reason)


def _check_before_writing(rt: Runtime, job: Job) -> None:
    """Everything that can refuse this file, asked before its first write."""
    dataset = job["dataset"]
    refuse_unreadable(_rights(rt), dataset, dataset.get("pid"))
    if not rt.config.scicat.validate_before_write:
        return
    endpoints = rt.config.scicat.api_endpoints
    _is_valid(rt, endpoints.datasets, dataset, "dataset")
    if job.get("origdatablock"):
        # The v3 route validates the block without needing its dataset (v4's asks for it first).
        block = {"datasetId": dataset.get("pid") or "pending", **job["origdatablock"]}
        _is_valid(rt, "origdatablocks", block, "origdatablock", base=rt.config.scicat.v3_base)


def _attach_unverifiable(rt: Runtime, job: Job) -> Job:
    """Attach the block to a dataset we created a moment ago but may not read back.

    The 201 says the dataset is new, so it holds no block yet: attaching ours now is safe.
    (The v3 route: a privileged-only account may create blocks there, not through v4.)
    Reruns of this file are refused (403 on the look-up), as are other groups' files from
    now on, before any write.
    """
    log.warning(
        "scicat.account_cannot_read_back",
        dataset_pid=job["pid"],
        file=job.get("file"),
        account=_rights(rt).describe(),
    )
    payload = {"datasetId": job["pid"], **job["origdatablock"]}
    body = rt.scicat.create_origdatablock(payload, v3=True)
    block_id = body.get("_id") or body.get("id") if isinstance(body, dict) else None
    return {**job, "origdatablock_id": block_id, "origdatablock_created": True, "verifiable": False}


def _stored_but_unreadable(rt: Runtime, job: Job) -> bool:
    """After a lost create answer: was it stored, for an account that cannot read it back?

    A look-up answered 404 a moment ago, so a 403 now means our POST was stored (the pid is
    this file's). The caller attaches the block while that is still known, instead of leaving
    it to a rerun that could only refuse.
    """
    pid = job["dataset"].get("pid")
    if not pid or _rights(rt).readable(job["dataset"]) is True:
        return False
    try:
        _lookup(rt, pid)
    except CannotVerify:
        return True
    except IngestError:  # the original transient error is the one to report
        return False
    return False


def _post_first(rt: Runtime, job: Job) -> bool:
    """Create without looking first: SciCat's 409 is then the look-up (``scicat/write_order.py``).

    The 409 catches only a dataset stored under the pid we send, so every other way a look-up
    protects must be absent: the job-id search (it finds datasets of this file under other
    pids: another tool's, or a proxy's rewrite), isValid before writing (a re-run would be
    refused for a payload SciCat already holds), an account that may not read the dataset
    back (after a lost 409 answer it could not tell "ours" from "absent"). And only on the
    step's first write (a retry after a sent POST looks first), for a dataset with a pid,
    with the pid check on, while this process knows its SciCat keeps the pids it is sent.
    """
    dataset = job["dataset"]
    return (
        bool(job.get("first_write"))
        and bool(dataset.get("pid"))
        and rt.config.ingestion.check_if_dataset_exists_by_pid
        and _metadata_key_value(rt, job) is None
        and not rt.config.scicat.validate_before_write
        and rt.dataset_order.post_first()
        and _rights(rt).readable(dataset) is True
    )


def post_dataset(rt: Runtime, job: Job) -> Job:
    """Create the dataset unless SciCat already has it; record the pid."""
    if job.get("pid"):
        return job
    ensure_samples(rt, job)  # the samples the dataset names (create_missing), before it
    dataset = job["dataset"]
    pid = dataset.get("pid")
    order = rt.dataset_order
    # A kept pid means SciCat once rewrote this file's: its 409 would not catch a second one.
    posting_first = _post_first(rt, job) and _kept_pid(rt, job) is None
    existing = None if posting_first else _existing(rt, job)
    if existing is not None:
        _ours(existing, dataset)
        order.note_found()
        return _found(job, existing, pid)
    _check_before_writing(rt, job)
    try:
        status, body = rt.scicat.create_dataset(dataset)
    except ScicatUnavailable:
        if _stored_but_unreadable(rt, job):
            return _attach_unverifiable(rt, {**job, "pid": str(pid), "dataset_created": True})
        raise  # the retry looks the dataset up first
    if status == 409:
        existing = _lookup(rt, str(pid))
        if existing is None:
            raise ScicatUnavailable(f"SciCat answered 409 for pid {pid} but then 404 to its GET")
        _ours(existing, dataset)
        order.note_found()
        return _found(job, existing, pid)
    created_pid = body.get("pid") if isinstance(body, dict) else None
    if not created_pid:
        # Stored or not, we cannot tell from this answer: the retry looks it up first.
        raise ScicatUnavailable(f"SciCat answered {status} to the dataset POST without a pid: {body!r:.200}")
    order.note_created(sent_pid=pid, stored_pid=str(created_pid))
    created: Job = {**job, "pid": str(created_pid), "dataset_created": True}
    if pid and created_pid != pid:
        created = _rewritten(rt, created, str(pid), str(created_pid))
    rights = _rights(rt)
    if rights.reads_all is None and rights.foreign(dataset):
        # First dataset of a group not ours: can this account read it back? (proves it or not)
        try:
            _lookup(rt, str(created_pid))
        except CannotVerify:
            return _attach_unverifiable(rt, created)
    return created


def _rewritten(rt: Runtime, job: Job, sent: str, stored: str) -> Job:
    """SciCat stored the dataset under ``stored``, not the pid we sent: make reruns find it.

    Later runs GET the pid we sent (404), then search by the metadata key (when it is on and
    the schema has the item), then read the pid kept here. Kept nowhere and not searchable:
    the block is still attached (the dataset is whole), then the file ends in a conflict.
    """
    findable = _metadata_key_value(rt, job) is not None
    kept = rt.pid_memo is not None and rt.pid_memo.keep(job, sent, stored)
    log.warning(
        "scicat.pid_rewritten",
        dataset_pid=stored,
        requested_pid=sent,
        file=job.get("file"),
        findable_by_metadata=findable,
        kept_for_reruns=kept,
    )
    rewritten: Job = {**job, "requested_pid": sent}
    if not findable and not kept:
        rewritten["pid_unfindable"] = True
    return rewritten


def _unfindable(rt: Runtime, job: Job) -> IdempotencyConflict:
    """The conflict of a dataset no rerun could find: say so, and how to make it findable."""
    key = rt.config.ingestion.check_if_dataset_exists_by_metadata_key
    hint = (
        f"do not run this file again as things are: it would be catalogued twice. Turn the job-id "
        f"search on (ingestion.check_if_dataset_exists_by_metadata: true, with a {key!r} item in the "
        "schema's scientificMetadata) or let SciCat keep the pids it is sent (a proxy or "
        "deployment rewrites them); with save_file_hash on, ingest-now/the drop-in keep the pid "
        "beside the hash file instead"
    )
    log.warning(
        "scicat.pid_not_findable",
        dataset_pid=job["pid"],
        requested_pid=job.get("requested_pid"),
        file=job.get("file"),
        hint=hint,
    )
    metrics.count_conflict("pid-not-findable")
    return IdempotencyConflict(
        f"SciCat stored this file's dataset under pid {job['pid']}, not the pid sent "
        f"({job.get('requested_pid')}), and a rerun could not find it (no job-id search, the pid "
        f"kept nowhere); the dataset and its origdatablock are complete; {hint}",
        hint=hint,
    )


def _has_our_files(block: dict[str, Any], paths: set[str]) -> bool:
    return any(entry.get("path") in paths for entry in block.get("dataFileList") or [])


def _blocks(rt: Runtime, pid: str) -> list[dict[str, Any]]:
    try:
        blocks = rt.scicat.origdatablocks_of(pid)
    except ScicatAuthError:
        raise
    except ScicatRejected as exc:
        if exc.status == 403:
            raise _unverifiable(rt, "the list of origdatablocks", pid, half_written=True) from None
        raise
    if not all(isinstance(block, dict) for block in blocks):
        raise ScicatUnavailable(f"SciCat's origdatablock list of {pid} is not a list of blocks")
    return blocks


def _settle_totals(rt: Runtime, job: Job, blocks: list[dict[str, Any]]) -> Job:
    """Check the dataset's totals against its blocks; repair them if SciCat left them short.

    Totals read by post-dataset a moment ago save a GET; a mismatch is confirmed on a fresh
    read before anything is PATCHed.
    """
    seen = job.get("dataset_totals")
    totals = check_totals(rt.scicat, job["pid"], blocks, dataset=seen) if seen else None
    if totals is None or not totals.ok:
        totals = check_totals(rt.scicat, job["pid"], blocks)
    if totals.ok:
        return job
    log.warning(
        "scicat.totals_repaired", dataset_pid=job["pid"], file=job.get("file"), found=totals.describe()
    )
    repair_totals(rt.scicat, totals)
    return {**job, "totals_repaired": True}


def _create_block(rt: Runtime, payload: dict[str, Any]) -> Any:
    """POST the block; v4's 403 (it also wants update rights on the dataset) falls back to v3.

    A privileged account may create blocks for any dataset through v3, but through v4 only for
    datasets it may update (CONTRACT.md §2.4): without the fallback its dataset would be left
    without files. A 403 stored nothing, so posting again through v3 cannot duplicate.
    """
    try:
        return rt.scicat.create_origdatablock(payload)
    except ScicatAuthError:
        raise
    except ScicatRejected as exc:
        if exc.status != 403 or rt.config.scicat.api_version != "v4":
            raise
    log.warning("scicat.v4_block_refused_using_v3", dataset_pid=payload["datasetId"])
    return rt.scicat.create_origdatablock(payload, v3=True)


def _blocks_unseen(job: Job) -> bool:
    """No block of ours can exist yet, so listing the dataset's blocks would be a wasted GET.

    True when this chain created the dataset (``dataset_created``) under a pid SciCat made
    (we sent none), and the executor says no earlier execution of this step may have sent a
    block (``first_write``, see ingest/executor.py). A pid we sent may be one whose dataset an
    admin deleted: SciCat keeps that dataset's blocks, and the new dataset gets them back.
    """
    return (
        bool(job.get("first_write"))
        and job.get("dataset_created") is True
        and not job.get("dataset", {}).get("pid")
    )


def _refuse_duplicates(rt: Runtime, job: Job, blocks: list[dict[str, Any]]) -> None:
    """Two blocks listing one file: a conflict (warning, metric, the admin's call), never a sum."""
    duplicated = duplicated_files(blocks)
    if not duplicated:
        return
    conflict = duplicates_conflict(rt.scicat, job["pid"], duplicated, job.get("file"))
    log.warning(
        "scicat.duplicate_blocks",
        dataset_pid=job["pid"],
        file=job.get("file"),
        listed=duplicated[0][0],
        blocks=list(duplicated[0][1]),
        hint=conflict.hint,
    )
    metrics.count_conflict("duplicate-blocks")
    raise conflict


def post_origdatablock(rt: Runtime, job: Job) -> Job:
    """Attach the file list unless the dataset already holds a block with our file."""
    attached = _attach_block(rt, job)
    if attached.get("pid_unfindable"):
        raise _unfindable(rt, attached)
    return attached


def _attach_block(rt: Runtime, job: Job) -> Job:
    """Post the block unless the dataset holds one with our file (then check its totals)."""
    if job.get("origdatablock_id"):
        return job
    pid = job["pid"]
    payload = {"datasetId": pid, **job["origdatablock"]}
    ours = {entry["path"] for entry in payload["dataFileList"][:1]}
    blocks = [] if _blocks_unseen(job) else _blocks(rt, pid)
    _refuse_duplicates(rt, job, blocks)
    for block in blocks:
        if _has_our_files(block, ours):
            # The file in SciCat must be this file: a changed one is never "already done".
            refuse_changed_file(block, payload["dataFileList"][0], pid)
            found: Job = {
                **job,
                "origdatablock_id": block.get("_id") or block.get("id"),
                "origdatablock_created": False,
            }
            if job.get("dataset_created"):
                # A dataset created now already holds our block: one a deleted dataset of this
                # pid left behind (the same file, as just checked). It is this file's block.
                log.warning(
                    "scicat.leftover_block_adopted",
                    dataset_pid=pid,
                    file=job.get("file"),
                    block=found["origdatablock_id"],
                )
            return _settle_totals(rt, found, blocks)
    if rt.config.scicat.validate_before_write:
        _is_valid(rt, rt.config.scicat.api_endpoints.origdatablocks, payload, "origdatablock")
    body = _create_block(rt, payload)
    block_id = body.get("_id") or body.get("id") if isinstance(body, dict) else None
    # A 201 comes after SciCat's second write (the totals); only a block found on a retry or a
    # rerun may sit beside totals a SciCat crash left short, so only those are checked.
    return {**job, "origdatablock_id": block_id, "origdatablock_created": True}

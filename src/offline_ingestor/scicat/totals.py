"""A dataset's ``size``/``numberOfFiles`` against its origdatablocks: check and repair.

SciCat stores an origdatablock, then adds its size and file count to the dataset in a second
write (``updateDatasetSizeAndFiles``, ``$inc``). A SciCat crash between the two leaves the
block stored and the dataset's totals short (seen: size 0 / numberOfFiles 0 with the block
present). ``check_totals`` compares; ``repair_totals`` PATCHes the dataset to the blocks' sums.
Plain functions over a ``ScicatClient`` so that the audit and the steps share them.

Two blocks listing the same file are never summed: a file is catalogued once, so they are a
conflict for an admin (``duplicates_conflict``), and ``repair_totals`` refuses to PATCH from
them (their sum is exactly the doubled size SciCat's ``$inc`` already shows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import IdempotencyConflict, PermanentError, ScicatRejected
from .admin_calls import block_id, delete_block_call, oldest_first

if TYPE_CHECKING:
    from .client import ScicatClient

__all__ = [
    "Duplicated",
    "Totals",
    "check_totals",
    "duplicated_files",
    "duplicates_conflict",
    "repair_totals",
    "totals_of_blocks",
]

#: A path listed by more than one block, with those blocks' ids, oldest first.
Duplicated = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Totals:
    """What the dataset says and what its blocks add up to."""

    pid: str
    size: int
    number_of_files: int
    blocks_size: int
    blocks_files: int
    blocks: int
    #: Files listed by more than one of the blocks: their sums are not totals to repair to.
    duplicated: tuple[Duplicated, ...] = ()

    @property
    def ok(self) -> bool:
        return self.size == self.blocks_size and self.number_of_files == self.blocks_files

    def describe(self) -> str:
        return (
            f"dataset {self.pid} says size {self.size} / numberOfFiles {self.number_of_files}, "
            f"its {self.blocks} origdatablock(s) hold {self.blocks_size} bytes / {self.blocks_files} files"
        )


def totals_of_blocks(blocks: list[dict[str, Any]]) -> tuple[int, int]:
    """(size, number of files) summed over origdatablocks, as SciCat's ``$inc`` adds them."""
    size = sum(int(block.get("size") or 0) for block in blocks)
    files = sum(len(block.get("dataFileList") or []) for block in blocks)
    return size, files


def duplicated_files(blocks: list[dict[str, Any]]) -> tuple[Duplicated, ...]:
    """Every path that more than one block lists, with the ids of those blocks, oldest first."""
    holders: dict[str, list[dict[str, Any]]] = {}
    for block in blocks:
        for path in {str(entry.get("path")) for entry in block.get("dataFileList") or []}:
            holders.setdefault(path, []).append(block)
    return tuple(
        (path, tuple(block_id(block) for block in oldest_first(held)))
        for path, held in holders.items()
        if len(held) > 1
    )


def duplicates_conflict(
    client: ScicatClient, pid: str, duplicated: tuple[Duplicated, ...], file: str | None = None
) -> IdempotencyConflict:
    """The conflict two blocks listing one file are, with the admin's calls as ``audit`` prints them."""
    path, ids = duplicated[0]
    calls = [delete_block_call(client.settings, later) for later in ids[1:]]
    rerun = f"offline-ingestor audit --repair {file}" if file else "offline-ingestor audit --repair FILE"
    hint = (
        f"an admin deletes the later origdatablock{'s' if len(calls) > 1 else ''}: "
        f"{' ; '.join(calls)} ; then `{rerun}` sets the dataset's size/numberOfFiles from the one left"
    )
    # The calls go in the message too: ingest-now and the drop-in print only the message.
    return IdempotencyConflict(
        f"dataset {pid} has {len(ids)} origdatablocks listing {path} ({', '.join(ids)}): a file is "
        f"catalogued once, so this is a conflict, not a sum; nothing was written or repaired; {hint}",
        hint=hint,
    )


def check_totals(
    client: ScicatClient,
    pid: str,
    blocks: list[dict[str, Any]] | None = None,
    dataset: dict[str, Any] | None = None,
) -> Totals:
    """Read the dataset (and its blocks) unless given, and compare the totals."""
    if dataset is None:
        dataset = client.get_dataset(pid)
    if dataset is None:
        raise PermanentError(f"dataset {pid} is gone from SciCat while checking its totals")
    if blocks is None:
        blocks = client.origdatablocks_of(pid)
    size, files = totals_of_blocks(blocks)
    return Totals(
        pid,
        int(dataset.get("size") or 0),
        int(dataset.get("numberOfFiles") or 0),
        size,
        files,
        len(blocks),
        duplicated_files(blocks),
    )


def repair_totals(client: ScicatClient, totals: Totals) -> Totals:
    """PATCH the dataset's totals to its blocks' sums; a refusal is a permanent failure.

    Never from blocks that list one file twice: that sum is the doubled size, not the repair.
    """
    if totals.duplicated:
        raise duplicates_conflict(client, totals.pid, totals.duplicated)
    if totals.ok:
        return totals
    fields = {"size": totals.blocks_size, "numberOfFiles": totals.blocks_files}
    try:
        client.patch_dataset(totals.pid, fields)
    except ScicatRejected as exc:
        raise PermanentError(
            f"{totals.describe()} (SciCat stopped between storing a block and updating the "
            f"dataset); repairing them was refused: {exc.message}",
            hint=f"PATCH dataset {totals.pid} with {fields} as an account that may update it",
        ) from None
    return Totals(
        totals.pid,
        totals.blocks_size,
        totals.blocks_files,
        totals.blocks_size,
        totals.blocks_files,
        totals.blocks,
    )

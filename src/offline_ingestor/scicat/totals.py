"""A dataset's ``size``/``numberOfFiles`` against its origdatablocks: check and repair.

SciCat stores an origdatablock, then adds its size and file count to the dataset in a second
write (``updateDatasetSizeAndFiles``, ``$inc``). A SciCat crash between the two leaves the
block stored and the dataset's totals short (seen: size 0 / numberOfFiles 0 with the block
present). ``check_totals`` compares; ``repair_totals`` PATCHes the dataset to the blocks' sums.
Plain functions over a ``ScicatClient`` so that the audit and the steps share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError, ScicatRejected

if TYPE_CHECKING:
    from .client import ScicatClient

__all__ = ["Totals", "check_totals", "repair_totals", "totals_of_blocks"]


@dataclass(frozen=True)
class Totals:
    """What the dataset says and what its blocks add up to."""

    pid: str
    size: int
    number_of_files: int
    blocks_size: int
    blocks_files: int
    blocks: int

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
    )


def repair_totals(client: ScicatClient, totals: Totals) -> Totals:
    """PATCH the dataset's totals to its blocks' sums; a refusal is a permanent failure."""
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

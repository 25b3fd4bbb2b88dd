"""What SciCat holds under the audited roots, read in batches.

* datasets: one paged ``GET datasets?filter=`` per root (``sourceFolder`` starting with the
  root) and per sourceFolder outside every root, then one ``pid inq [...]`` query per page
  of pids not found that way (a dataset whose sourceFolder changed is still found);
* origdatablocks: ``GET datasets/<pid>/origdatablocks`` only for datasets a file or an
  orphan check needs (SciCat has no documented batched block query, CONTRACT.md §2).

Every call goes through ``ScicatClient.request``, so ``scicat.rate_limit_per_s`` and the
retries of GETs apply; ``calls`` counts them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ..scicat import ScicatClient

__all__ = ["PAGE_SIZE", "ScicatView"]

#: Datasets per listing page and pids per ``inq`` query (URLs stay far below 8 KiB limits
#: for typical ``<prefix>/<uuid>`` pids at 100 per query).
PAGE_SIZE = 500
PID_BATCH = 100


class ScicatView:
    """Datasets by pid, and blocks per dataset, fetched lazily and remembered."""

    def __init__(self, client: ScicatClient, metadata_key: str = "job_id") -> None:
        self.client = client
        self.metadata_key = metadata_key
        self.datasets: dict[str, dict[str, Any]] = {}
        self._blocks: dict[str, list[dict[str, Any]]] = {}
        self._listed_prefixes: set[str] = set()
        self._listed_folders: set[str] = set()
        self._asked_pids: set[str] = set()
        self.calls = 0

    # -- datasets -------------------------------------------------------------------------

    def _list(self, where: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        skip = 0
        endpoint = self.client.settings.api_endpoints.datasets
        while True:
            flt = {"where": where, "limits": {"limit": PAGE_SIZE, "skip": skip, "order": "pid:asc"}}
            self.calls += 1
            _, body = self.client.request("GET", endpoint, params={"filter": json.dumps(flt)})
            page = [doc for doc in body or [] if isinstance(doc, dict)]
            found.extend(page)
            if len(page) < PAGE_SIZE:
                return found
            skip += PAGE_SIZE

    def _keep(self, docs: Iterable[dict[str, Any]]) -> None:
        for doc in docs:
            if doc.get("pid"):
                self.datasets[str(doc["pid"])] = _slim(doc, self.metadata_key)

    def list_prefix(self, prefix: str) -> None:
        """Every dataset whose sourceFolder is ``prefix`` or under it (once per prefix)."""
        prefix = prefix.rstrip("/")
        if prefix in self._listed_prefixes:
            return
        self._listed_prefixes.add(prefix)
        self._keep(self._list({"sourceFolder": {"$regex": f"^{re.escape(prefix)}(/|$)"}}))

    def list_folder(self, folder: str) -> None:
        if folder in self._listed_folders or any(_under(folder, p) for p in self._listed_prefixes):
            return
        self._listed_folders.add(folder)
        self._keep(self._list({"sourceFolder": folder}))

    def fetch_pids(self, pids: Iterable[str]) -> None:
        """Ask for pids not seen in any listing yet, ``PID_BATCH`` per query."""
        wanted = sorted({pid for pid in pids if pid not in self.datasets and pid not in self._asked_pids})
        self._asked_pids.update(wanted)
        for start in range(0, len(wanted), PID_BATCH):
            self._keep(self._list({"pid": {"$in": wanted[start : start + PID_BATCH]}}))

    def in_folders(self, prefixes: Iterable[str]) -> list[dict[str, Any]]:
        """Known datasets whose sourceFolder is under one of ``prefixes``."""
        heads = [prefix.rstrip("/") for prefix in prefixes]
        return [
            doc
            for doc in self.datasets.values()
            if any(_under(str(doc.get("sourceFolder") or ""), head) for head in heads)
        ]

    # -- blocks ---------------------------------------------------------------------------

    def blocks(self, pid: str) -> list[dict[str, Any]]:
        if pid not in self._blocks:
            self.calls += 1
            self._blocks[pid] = self.client.origdatablocks_of(pid)
        return self._blocks[pid]

    def forget(self, pid: str) -> None:
        """Drop what we know of a dataset (after a repair changed it)."""
        self._blocks.pop(pid, None)


#: What the audit reads of a dataset; the rest of a (several-kB) document is dropped at once.
_KEPT = ("pid", "sourceFolder", "size", "numberOfFiles", "updatedAt")


def _slim(doc: dict[str, Any], metadata_key: str) -> dict[str, Any]:
    slim = {key: doc.get(key) for key in _KEPT}
    metadata = doc.get("scientificMetadata")
    if isinstance(metadata, dict) and metadata_key in metadata:
        slim["scientificMetadata"] = {metadata_key: metadata[metadata_key]}
    return slim


def _under(folder: str, prefix: str) -> bool:
    return folder == prefix or folder.startswith(prefix + "/")

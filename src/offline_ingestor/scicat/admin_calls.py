"""The exact calls an admin would make for what the ingestor never does itself (deletions).

Shared by the audit (which prints them per file) and the writes (whose conflicts name them in
the failed registry's hint), so that both say the very same thing.
"""

from __future__ import annotations

from ..config import ScicatOptions
from .client import ScicatClient

__all__ = ["block_id", "delete_block_call", "delete_dataset_call", "oldest_first"]


def _curl(method: str, url: str) -> str:
    return f"curl -X {method} -H \"Authorization: Bearer $SCICAT_TOKEN\" '{url}'"


def delete_dataset_call(settings: ScicatOptions, pid: str) -> str:
    """``DELETE /api/v3/datasets/<pid>`` (needs an account in DELETE_GROUPS)."""
    path = f"{settings.api_endpoints.datasets}/{ScicatClient.quote_pid(pid)}"
    return _curl("DELETE", f"{settings.api_base}/{path}")


def delete_block_call(settings: ScicatOptions, block_id: str) -> str:
    """``DELETE /api/v3/origdatablocks/<id>`` (admin)."""
    path = f"{settings.api_endpoints.origdatablocks}/{ScicatClient.quote_pid(block_id)}"
    return _curl("DELETE", f"{settings.api_base}/{path}")


def block_id(block: dict[str, object]) -> str:
    """A block's id as SciCat names it (``_id`` in v3 lists, ``id`` elsewhere)."""
    return str(block.get("_id") or block.get("id"))


def oldest_first(blocks: list[dict[str, object]]) -> list[dict[str, object]]:
    """``blocks`` by ``createdAt``: the first is kept, the later ones are the duplicates."""
    return sorted(blocks, key=lambda block: str(block.get("createdAt") or ""))

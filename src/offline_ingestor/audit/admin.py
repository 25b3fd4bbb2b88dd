"""The exact calls an admin would make for what the audit never does itself (deletions)."""

from __future__ import annotations

from ..config import ScicatOptions
from ..scicat import ScicatClient

__all__ = ["delete_block_call", "delete_dataset_call"]


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

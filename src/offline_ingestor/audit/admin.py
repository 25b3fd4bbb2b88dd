"""The exact calls an admin would make for what the audit never does itself (deletions).

They live in ``scicat/admin_calls.py``: the writes name the same calls in their conflicts.
"""

from __future__ import annotations

from ..scicat.admin_calls import delete_block_call, delete_dataset_call

__all__ = ["delete_block_call", "delete_dataset_call"]

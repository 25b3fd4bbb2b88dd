"""offline-ingestor: get raw NeXus files into SciCat exactly once.

The public API is small: :func:`enqueue` for producers (the online ingestor), the error
classes in :mod:`offline_ingestor.errors`, and the ``offline-ingestor`` command. Heavy
modules (Celery, h5py) load on first use so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "enqueue"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .producer import enqueue


def __getattr__(name: str) -> Any:
    if name == "enqueue":
        from .producer import enqueue

        return enqueue
    raise AttributeError(name)

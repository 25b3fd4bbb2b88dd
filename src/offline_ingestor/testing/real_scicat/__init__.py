"""The real SciCat backend (SciCatProject/backend) for tests and for people, on loopback.

``RealScicat(run_dir).start()`` builds the backend once into a cache folder keyed by the
archive's hash (:mod:`.build`), starts its database and the backend on free 127.0.0.1 ports
with the account types of ``observed-accounts/`` (:mod:`.accounts`) and seeds proposals and
instruments. ``scripts/scicat-backend start|stop|status`` does the same for a person
(``python -m offline_ingestor.testing.real_scicat``). :mod:`.proxy` records or disturbs the
traffic between a client and it. Anything missing (Node, npm, the archive, secantusdb)
raises :class:`BackendMissing` with one line naming it.
"""

from .build import BackendMissing, cache_root, ensure_built, find_archive, find_shared
from .server import RealScicat

__all__ = ["BackendMissing", "RealScicat", "cache_root", "ensure_built", "find_archive", "find_shared"]

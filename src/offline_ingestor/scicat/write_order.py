"""Whether ``post-dataset`` should POST first (GET only on 409) or GET first.

Both orders are safe (SciCat answers 409 to a second dataset with our pid, and the GET
checks the stored dataset is ours either way); they differ in cost. A new file costs one
request POST-first (the POST) and two GET-first (404, POST); a file whose dataset exists
(a re-run after Redis forgot it) costs two POST-first (409, GET) and one GET-first. Files
come in runs of one kind (a live stream of new files, or an operator re-queuing a folder),
so each process follows what its recent files were: an exponentially weighted share of
"created", POST-first while more than half were new. It starts POST-first (the live case).
"""

from __future__ import annotations

__all__ = ["DatasetOrder"]


class DatasetOrder:
    """Recent post-dataset outcomes of one process; ``weight`` = share of the newest one."""

    def __init__(self, weight: float = 0.3) -> None:
        self.weight = weight
        self._created_share = 1.0

    def post_first(self) -> bool:
        """POST before looking, as most recent datasets were new (one found does not flip it)."""
        return self._created_share > 0.5

    def note(self, *, created: bool) -> None:
        """Record whether the last dataset was created (True) or found in SciCat (False)."""
        self._created_share += self.weight * ((1.0 if created else 0.0) - self._created_share)

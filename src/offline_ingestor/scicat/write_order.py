"""Whether ``post-dataset`` may POST before looking (GET only on a 409) or must look first.

Looking first costs a new file two requests (the GET's 404, the POST); posting first costs
it one, and a file SciCat already has two (the 409, the GET that checks the dataset is
ours). Posting first is only as safe as SciCat's 409, which catches a second dataset only
when the first one carries the pid we send. So a process posts first only while both hold:

* it has seen this SciCat store a dataset under the pid it was sent, and never under another
  one. A deployment or proxy that rewrites pids makes datasets that a rerun finds only by
  looking (the pid's 404, then the metadata search): one such answer and this process looks
  first for good;
* most of its recent datasets were new. Files come in runs of one kind (the live stream of
  new files, or an operator re-queuing a folder whose Redis records are gone), and for a run
  of re-runs looking first is the cheaper order.

The caller adds what only the job and the config know (``writes._post_first``): the dataset
has a pid, the pid check is on, no earlier execution of the step may have sent the POST, and
nothing else needs a look-up first (the job-id search, isValid, an account that cannot read
the dataset back). Each worker thread has its own runtime, so each learns this on its own.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DatasetOrder"]


class DatasetOrder:
    """What one process has learnt about its SciCat's answers to dataset creates."""

    def __init__(
        self,
        weight: float = 0.3,
        *,
        keeps_pids: bool | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        #: Share of the newest outcome in the running share of "created".
        self.weight = weight
        #: None until the first create with a pid is answered; False for good once a pid
        #: came back rewritten. A command's process may start from what an earlier process
        #: of the same account learnt (``scicat/learned.py``), and tells ``on_change`` what
        #: it learns, so that the next one starts from it.
        self.keeps_pids: bool | None = keeps_pids
        self.on_change = on_change
        self._created_share = 1.0

    def post_first(self) -> bool:
        """POST before looking: SciCat is known to keep our pids and most datasets were new."""
        return self.keeps_pids is True and self._created_share > 0.5

    def note_created(self, *, sent_pid: str | None, stored_pid: str) -> None:
        """A 201: remember whether SciCat stored the dataset under the pid we sent."""
        if sent_pid:
            before = self.keeps_pids
            self.keeps_pids = self.keeps_pids is not False and stored_pid == sent_pid
            if self.keeps_pids != before and self.on_change is not None:
                self.on_change(self.keeps_pids)
        self._note(created=True)

    def note_found(self) -> None:
        """The dataset was already in SciCat (a GET found it or the POST got a 409)."""
        self._note(created=False)

    def _note(self, *, created: bool) -> None:
        self._created_share += self.weight * ((1.0 if created else 0.0) - self._created_share)

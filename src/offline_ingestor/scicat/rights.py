"""What the SciCat account may read back, and whether exactly-once can hold for a dataset.

The exactly-once checks (``steps.post_dataset``/``post_origdatablock``) read SciCat before
writing: GET the dataset, list its origdatablocks. They work only for datasets the account
may *read*. SciCat's read rule (CONTRACT.md §6.2): the dataset is published, or its
``ownerGroup``/``accessGroups``/``sharedWith`` names one of the account's groups, or the
account is in ``ADMIN_GROUPS`` (or ``UPDATE_DATASET_LIFECYCLE_GROUPS``). An account only in
``CREATE_DATASET_PRIVILEGED_GROUPS`` may create datasets for any group but not read them back:
for those datasets a rerun cannot tell whether it already wrote, so we refuse before writing.

The account's groups come from ``auth/whoami``. Whether it reads every dataset cannot be asked
directly; it is *proven* when SciCat shows it a dataset of a group it is not in (one probe
at start-up; any such read later also proves it) and *disproven* by a 403 on a read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import CannotVerify, ScicatRejected
from ..logs import get_logger

if TYPE_CHECKING:
    from .client import ScicatClient

__all__ = ["AccountRights", "account_rights", "refuse_unreadable"]

log = get_logger("offline_ingestor.scicat")
#: How a SciCat without ``auth/whoami`` answers it (no such route, or a method it lacks).
NO_WHOAMI_STATUSES = (404, 405)
#: One warning per process: every runtime of a worker process asks once.
_WARNED: list[bool] = []

#: What an operator can change so that the account may read back what it writes.
FIX = (
    "put the account's group in SciCat's ADMIN_GROUPS (what every reference deployment does), "
    "or have the schema put one of the account's groups in accessGroups"
)


class AccountRights:
    """The account's groups and whether it may read datasets of other groups."""

    def __init__(
        self,
        username: str | None,
        groups: tuple[str, ...],
        reads_all: bool | None = None,
        on_change: Callable[[bool | None], None] | None = None,
    ) -> None:
        self.username = username
        self.groups = groups
        self._reads_all = reads_all
        #: Told every change of ``reads_all`` (the learned-state file, ``scicat/learned.py``).
        self.on_change = on_change

    @property
    def reads_all(self) -> bool | None:
        """True: proven (saw a foreign dataset); False: SciCat answered 403 to a read; None: unknown."""
        return self._reads_all

    @reads_all.setter
    def reads_all(self, value: bool | None) -> None:
        changed = value != self._reads_all
        self._reads_all = value
        if changed and self.on_change is not None:
            self.on_change(value)

    def readable(self, dataset: dict[str, Any]) -> bool | None:
        """Whether SciCat will let this account read ``dataset`` back (None = cannot tell yet)."""
        if dataset.get("isPublished") is True:
            return True
        names = {
            dataset.get("ownerGroup"),
            *_list(dataset.get("accessGroups")),
            *_list(dataset.get("sharedWith")),
        }
        if names & set(self.groups):
            return True
        return self.reads_all

    def foreign(self, dataset: dict[str, Any]) -> bool:
        """The dataset names none of the account's groups (reading it proves "reads all")."""
        names = {
            dataset.get("ownerGroup"),
            *_list(dataset.get("accessGroups")),
            *_list(dataset.get("sharedWith")),
        }
        return not (names & set(self.groups)) and dataset.get("isPublished") is not True

    def describe(self) -> str:
        """One line for ``health`` and error messages."""
        who = self.username or "anonymous"
        reads = {True: "reads every dataset", False: "reads only its groups' datasets (403 seen)"}.get(
            self.reads_all,  # type: ignore[arg-type]
            "reading other groups' datasets not proven yet",
        )
        return f"account {who} (groups {', '.join(self.groups) or 'none'}): {reads}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value else []


def _names(dataset: dict[str, Any]) -> set[Any]:
    """The groups a dataset is readable by (besides admins)."""
    return {dataset.get("ownerGroup"), *_list(dataset.get("accessGroups")), *_list(dataset.get("sharedWith"))}


def account_rights(client: ScicatClient, *, probe: bool = True) -> AccountRights:
    """The client's account rights, asked once per client (whoami + one list probe).

    A client given a learned-state file (``client.learned``, ``scicat/learned.py``: what an
    earlier process of this account asked less than ``scicat.learned_state_ttl_s`` ago)
    starts from it instead of asking; either way later answers are written back to it.
    """
    cached = client.rights
    if isinstance(cached, AccountRights):
        return cached
    store = client.learned
    known = store.load() if store is not None and probe else None
    if known is not None:
        rights = AccountRights(known.username, known.groups, known.reads_all)
    else:
        try:
            me = client.whoami()
        except ScicatRejected as exc:
            if exc.status not in NO_WHOAMI_STATUSES:
                raise
            # An older SciCat: conservative look-ups, nothing learnt to keep for others.
            rights = _without_whoami(client, exc.status)
            client.rights = rights
            return rights
        if me is None:
            rights = AccountRights(None, ())
        else:
            rights = AccountRights(str(me.get("username") or ""), tuple(me.get("currentGroups") or ()))
            if probe:
                rights.reads_all = _sees_foreign(client, rights) or None
        if store is not None and probe and rights.username is not None:
            store.save_rights(rights.username, rights.groups, rights.reads_all)
    if store is not None and rights.username is not None:
        rights.on_change = lambda reads_all: store.note(reads_all=reads_all)
    client.rights = rights
    return rights


def _without_whoami(client: ScicatClient, status: int) -> AccountRights:
    """An older SciCat has no ``auth/whoami``: groups unknown, so nothing is taken as readable
    that was not read (the conservative look-ups: GET before every write, a 403 refuses)."""
    if not _WARNED:
        _WARNED.append(True)
        log.warning(
            "scicat.no_whoami",
            status=status,
            reason="this SciCat has no GET auth/whoami (an older release): the account's groups "
            "are unknown, so every write is looked up first and rights are learnt from 403s",
        )
    return AccountRights(client.settings.username or None, ())


def _sees_foreign(client: ScicatClient, rights: AccountRights) -> bool:
    """Whether SciCat lists a dataset of a group the account is not in (proves read-any)."""
    groups = list(rights.groups)
    where = {
        "ownerGroup": {"$nin": groups},
        "accessGroups": {"$nin": groups},
        "sharedWith": {"$nin": groups},
        "isPublished": False,
    }
    try:
        _, body = client.request(
            "GET",
            client.settings.api_endpoints.datasets,
            params={
                "filter": json.dumps(
                    {"where": where, "fields": ["pid", "ownerGroup"], "limits": {"limit": 1}}
                )
            },
        )
    except Exception:  # a probe: any failure leaves "unknown", never blocks start-up
        return False
    return isinstance(body, list) and any(isinstance(d, dict) and rights.foreign(d) for d in body)


def refuse_unreadable(rights: AccountRights, dataset: dict[str, Any], pid: str | None) -> None:
    """Raise before any write when SciCat will not let the account read this dataset back."""
    if rights.readable(dataset) is False:
        raise CannotVerify(
            f"nothing was written: not creating dataset {pid or '(pid from SciCat)'} for ownerGroup "
            f"{dataset.get('ownerGroup')!r}: {rights.describe()}, so a rerun could not see what "
            f"was already written (no exactly-once). To ingest it, {FIX}; then requeue",
            hint=f"nothing was written; {FIX}, then requeue",
        )

"""What one process learnt about its SciCat account, kept for the next process (a cache file).

``ingest-now`` and the drop-in run once per file, so each would otherwise ask SciCat again
what a worker process asks once: the account's groups (``auth/whoami``), whether it reads
other groups' datasets (a one-dataset listing, ``scicat/rights.py``) and whether SciCat stores
a dataset under the pid it is sent (``scicat/write_order.py``: a GET before the first POST).
Three requests of seven for a new file. Here those answers are kept in one small JSON file
per SciCat URL and account, for ``scicat.learned_state_ttl_s`` from the moment SciCat was
asked (whoami), so a fresh process starts where the last one stopped, as a long-lived worker
process does.

Trust, and why this is no weaker than a worker process:

* the file holds only what SciCat answered: URL (without any user:password part), account
  name, groups, ``reads_all``, ``keeps_pids``, and when whoami was asked. Never a token or
  password, in it or in its name (the name is a digest of URL and account);
* it is ignored when corrupt, of another version, of another URL or account, older than the
  TTL (or stamped in the future), not a regular file owned by this user, or readable by
  others: the process then asks SciCat as before;
* the two "trust less" answers win: a ``keeps_pids`` or ``reads_all`` of ``False`` (a
  rewritten pid, a 403 on a read) written by any process stays ``False`` until the TTL ends,
  whatever a concurrent process writes (read-modify-write under ``flock``);
* every exactly-once condition of ``post-dataset`` (``ingest/writes.py``, ``_post_first``) is
  still checked per file; the cache only replaces "this process saw it" by "a process of this
  account saw it less than TTL ago", which is what a worker process relies on for days.

Failing to read or write the file never fails an ingestion: the file is a shortcut only.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import ScicatOptions

__all__ = ["Learned", "LearnedStore", "account_of", "default_directory", "public_url", "store_for"]

#: Bumped when the file's meaning changes: files of another version are ignored.
VERSION = 1
#: A file stamped this far in the future (clock steps) is not trusted.
_CLOCK_SKEW_S = 60.0


@dataclass(frozen=True)
class Learned:
    """SciCat's answers for one account, as of ``asked_at`` (epoch seconds of the whoami)."""

    asked_at: float
    username: str | None
    groups: tuple[str, ...]
    reads_all: bool | None = None
    keeps_pids: bool | None = None


def public_url(url: str) -> str:
    """``url`` without a ``user:password@`` part (it names the SciCat, never a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def account_of(username: str, token: str) -> str | None:
    """The account a config logs in as: its username, or the username a SciCat JWT names.

    None (no cache) for an anonymous config or a token that is not a JWT with a username:
    the account could then only be named by the token itself, which is never stored.
    """
    if username:
        return f"user:{username}"
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    name = payload.get("username") if isinstance(payload, dict) else None
    return f"jwt:{name}" if isinstance(name, str) and name else None


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/offline-ingestor`` (``~/.cache/offline-ingestor``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "offline-ingestor"


class LearnedStore:
    """The cache file of one SciCat URL and account."""

    def __init__(
        self,
        directory: Path,
        url: str,
        account: str,
        ttl_s: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.url = public_url(url)
        self.account = account
        self.ttl_s = ttl_s
        self._now = now
        digest = hashlib.sha256(f"{VERSION}\0{self.url}\0{account}".encode()).hexdigest()[:32]
        self.directory = directory
        self.path = directory / f"scicat-{digest}.json"

    # -- reading --------------------------------------------------------------------------

    def load(self) -> Learned | None:
        """The file's answers, or None when there is no usable file (never raises)."""
        try:
            return self._parse(self._read())
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _read(self) -> Any:
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                raise ValueError("not a private regular file of this user")
            return json.loads(handle.read(65536))

    def _parse(self, data: Any) -> Learned | None:
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return None
        if data.get("url") != self.url or data.get("account") != self.account:
            return None
        asked_at = float(data["asked_at"])
        now = self._now()
        if not (now - self.ttl_s < asked_at <= now + _CLOCK_SKEW_S):
            return None
        username = data.get("username")
        groups = data.get("groups")
        if not (username is None or isinstance(username, str)):
            return None
        if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
            return None
        flags = {name: data.get(name) for name in ("reads_all", "keeps_pids")}
        if not all(value in (None, True, False) for value in flags.values()):
            return None
        return Learned(asked_at, username, tuple(groups), flags["reads_all"], flags["keeps_pids"])

    # -- writing --------------------------------------------------------------------------

    def save_rights(self, username: str | None, groups: tuple[str, ...], reads_all: bool | None) -> None:
        """A fresh whoami (and probe): starts a new file, stamped now."""
        fresh = Learned(self._now(), username, groups, reads_all, None)
        self._update(lambda current: fresh if current is None else _merge(fresh, _flags(current)))

    def note(self, **changes: bool | None) -> None:
        """Record a later answer (``reads_all``, ``keeps_pids``) in the current file, if any.

        Without a current file nothing is written: the next process asks SciCat anyway.
        """
        self._update(lambda current: None if current is None else _merge(current, changes))

    def _update(self, change: Callable[[Learned | None], Learned | None]) -> None:
        """Read, change and replace the file under a lock; any failure leaves it as it was."""
        with contextlib.suppress(OSError, ValueError, TypeError):
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._locked():
                learned = change(self.load())
                if learned is not None:
                    self._replace(learned)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _replace(self, learned: Learned) -> None:
        data = {
            "version": VERSION,
            "url": self.url,
            "account": self.account,
            "asked_at": learned.asked_at,
            "username": learned.username,
            "groups": list(learned.groups),
            "reads_all": learned.reads_all,
            "keeps_pids": learned.keeps_pids,
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _flags(learned: Learned) -> dict[str, bool | None]:
    return {"reads_all": learned.reads_all, "keeps_pids": learned.keeps_pids}


def _merge(base: Learned, changes: dict[str, bool | None]) -> Learned:
    """``base`` with ``changes``; a ``False`` on either side wins (it trusts less)."""
    values: dict[str, bool | None] = {"reads_all": base.reads_all, "keeps_pids": base.keeps_pids}
    for name, value in changes.items():
        if name not in values or value is None:
            continue
        values[name] = False if False in (values[name], value) else value
    return Learned(base.asked_at, base.username, base.groups, values["reads_all"], values["keeps_pids"])


def store_for(settings: ScicatOptions) -> LearnedStore | None:
    """The learned-state file of this config's SciCat and account; None when it has none."""
    if settings.learned_state_ttl_s <= 0:
        return None
    account = account_of(settings.username, settings.token.get_secret_value())
    if account is None:
        return None
    directory = Path(settings.learned_state_dir) if settings.learned_state_dir else default_directory()
    return LearnedStore(directory, settings.api_base, account, settings.learned_state_ttl_s)

"""The learned-state file (``scicat/learned.py``): TTL, key, corrupt files, no secrets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from offline_ingestor.config import ScicatOptions
from offline_ingestor.scicat.learned import LearnedStore, account_of, public_url, store_for
from offline_ingestor.scicat.rights import AccountRights, account_rights

URL = "https://scicat.example.org/api/v3"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6ImluZ2VzdG9yIn0.c2VjcmV0LXNpZ25hdHVyZQ"  # username ingestor


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(tmp_path: Path, clock: Clock, url: str = URL, account: str = "user:ingestor") -> LearnedStore:
    return LearnedStore(tmp_path / "cache", url, account, ttl_s=900, now=clock)


def test_answers_are_reused_within_the_ttl_and_ignored_after_it(tmp_path: Path) -> None:
    clock = Clock()
    first = store(tmp_path, clock)
    first.save_rights("ingestor", ("ingestor", "admin"), True)
    first.note(keeps_pids=True)
    clock.now += 899
    learned = store(tmp_path, clock).load()
    assert learned is not None and learned.groups == ("ingestor", "admin")
    assert learned.reads_all is True and learned.keeps_pids is True
    clock.now += 2  # 901 s after the whoami: a later note does not make it younger
    assert store(tmp_path, clock).load() is None


def test_a_file_stamped_in_the_future_is_ignored(tmp_path: Path) -> None:
    clock = Clock()
    store(tmp_path, clock).save_rights("ingestor", ("ingestor",), True)
    clock.now -= 3600  # the clock stepped back an hour
    assert store(tmp_path, clock).load() is None


def test_keyed_by_url_and_account(tmp_path: Path) -> None:
    clock = Clock()
    store(tmp_path, clock).save_rights("ingestor", ("ingestor",), True)
    assert store(tmp_path, clock, url="https://other.example.org/api/v3").load() is None
    assert store(tmp_path, clock, account="user:someone-else").load() is None
    assert store(tmp_path, clock).load() is not None


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"version": 1}',
        b'{"version": 2, "url": "U", "account": "user:ingestor", "asked_at": 1000000, "username": "i", '
        b'"groups": []}',
        b'{"version": 1, "url": "U", "account": "user:ingestor", "asked_at": "soon", "groups": []}',
        b'{"version": 1, "url": "U", "account": "user:ingestor", "asked_at": 1000000, "username": "i", '
        b'"groups": "ingestor"}',
        b'{"version": 1, "url": "U", "account": "user:ingestor", "asked_at": 1000000, "username": "i", '
        b'"groups": [], "reads_all": "yes"}',
    ],
    ids=["garbage", "not-utf8", "a-list", "no-fields", "other-version", "bad-time", "bad-groups", "bad-flag"],
)
def test_a_corrupt_file_is_ignored(tmp_path: Path, content: bytes) -> None:
    clock = Clock()
    cache = store(tmp_path, clock)
    cache.save_rights("ingestor", ("ingestor",), True)
    cache.path.write_bytes(content.replace(b'"U"', json.dumps(cache.url).encode()))
    assert cache.load() is None
    cache.note(keeps_pids=True)  # a note on a corrupt file writes nothing
    assert cache.load() is None


def test_a_file_readable_by_others_or_a_symlink_is_ignored(tmp_path: Path) -> None:
    clock = Clock()
    cache = store(tmp_path, clock)
    cache.save_rights("ingestor", ("ingestor",), True)
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    os.chmod(cache.path, 0o644)
    assert cache.load() is None
    os.chmod(cache.path, 0o600)
    target = cache.path.with_name("elsewhere.json")
    cache.path.rename(target)
    cache.path.symlink_to(target)
    assert cache.load() is None


def test_no_secret_in_the_file_or_its_name(tmp_path: Path) -> None:
    settings = ScicatOptions(
        host="https://admin:hunter2@scicat.example.org/api/v3",
        token=TOKEN,  # type: ignore[arg-type]
        learned_state_dir=str(tmp_path / "cache"),
    )
    cache = store_for(settings)
    assert cache is not None and cache.account == "jwt:ingestor"
    cache.save_rights("ingestor", ("ingestor",), True)
    cache.note(keeps_pids=True)
    written = cache.path.read_text()
    for secret in (TOKEN, TOKEN.split(".")[2], "hunter2", "admin:"):
        assert secret not in written and secret not in cache.path.name
    assert json.loads(written)["url"] == "https://scicat.example.org/api/v3"
    with_password = ScicatOptions(
        host=URL,
        username="ingestor",
        password="hunter2",  # type: ignore[arg-type]
        learned_state_dir=str(tmp_path / "cache"),
    )
    cache = store_for(with_password)
    assert cache is not None
    cache.save_rights("ingestor", ("ingestor",), True)
    assert "hunter2" not in cache.path.read_text()


def test_accounts_without_a_name_are_not_cached(tmp_path: Path) -> None:
    assert account_of("", "") is None
    assert account_of("", "an-opaque-token") is None  # only the token could name it: never stored
    assert account_of("", "a.b.c") is None
    assert account_of("ingestor", "") == "user:ingestor"
    assert store_for(ScicatOptions(host=URL, token=TOKEN, learned_state_ttl_s=0)) is None  # type: ignore[arg-type]


def test_public_url_drops_credentials_only() -> None:
    assert (
        public_url("https://u:p@scicat.example.org:8443/api/v3/") == "https://scicat.example.org:8443/api/v3"
    )


def test_answers_that_trust_less_win(tmp_path: Path) -> None:
    """A rewritten pid or a 403 seen by one process holds for every process until the TTL ends."""
    clock = Clock()
    cache = store(tmp_path, clock)
    cache.save_rights("ingestor", ("ingestor",), True)
    cache.note(keeps_pids=False)
    cache.note(keeps_pids=True, reads_all=False)
    cache.note(reads_all=True)
    learned = cache.load()
    assert learned is not None and learned.keeps_pids is False and learned.reads_all is False
    # A concurrent process asking whoami again keeps them too.
    cache.save_rights("ingestor", ("ingestor",), True)
    learned = cache.load()
    assert learned is not None and learned.keeps_pids is False and learned.reads_all is False


class FakeClient:
    """What account_rights uses of a client; counts the requests it would send."""

    def __init__(self, learned: LearnedStore) -> None:
        self.rights: object = None
        self.learned = learned
        self.asked: list[str] = []
        self.settings = ScicatOptions(host=URL)

    def whoami(self) -> dict[str, object]:
        self.asked.append("whoami")
        return {"username": "ingestor", "currentGroups": ["ingestor"]}

    def request(self, method: str, path: str, **_: object) -> tuple[int, object]:
        self.asked.append(f"{method} {path}")
        return 200, [{"pid": "p", "ownerGroup": "someone-else"}]


def test_rights_come_from_the_file_and_changes_go_back_to_it(tmp_path: Path) -> None:
    clock = Clock()
    first = FakeClient(store(tmp_path, clock))
    rights = account_rights(first)  # type: ignore[arg-type]
    assert first.asked == ["whoami", "GET datasets"] and rights.reads_all is True
    second = FakeClient(store(tmp_path, clock))
    again = account_rights(second)  # type: ignore[arg-type]
    assert second.asked == [] and isinstance(again, AccountRights)
    assert again.groups == ("ingestor",) and again.reads_all is True
    again.reads_all = False  # a 403 on a read in the second process
    third = FakeClient(store(tmp_path, clock))
    assert account_rights(third).reads_all is False and third.asked == []  # type: ignore[arg-type]
    clock.now += 901
    fourth = FakeClient(store(tmp_path, clock))
    assert account_rights(fourth).reads_all is True  # type: ignore[arg-type]
    assert fourth.asked == ["whoami", "GET datasets"]

"""Replay the exchanges recorded against a real SciCat backend against the stand-in.

Every entry of ``shared/reference/scicat-backend/observed/run*.json`` is sent, in order, to a
stand-in configured like the recorded run; status codes must agree, error bodies must agree
exactly where they are deterministic, and 2xx bodies must have the same keys and the same
deterministic values. The recordings say which account made a request only through the label
("no token", "bad token", "user1 ...", "admin ..."; everything else was the ingestor).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from offline_ingestor.testing import ScicatStandin

pytestmark = pytest.mark.reference


def _shared() -> Path | None:
    for candidate in (
        Path(__file__).resolve().parents[3] / "shared",
        Path(os.environ.get("OFFLINE_INGESTOR_SHARED", "/nonexistent")),
    ):
        if (candidate / "reference" / "scicat-backend" / "observed").is_dir():
            return candidate
    return None


SHARED = _shared()
OBSERVED = SHARED / "reference" / "scicat-backend" / "observed" if SHARED else None
RUN1 = "run1-ingestor-privileged-only.json"
RUN2 = "run2-ingestor-admin-pid-regex.json"
CONFIGS: dict[str, dict[str, Any]] = {
    # observed/README.md
    RUN1: {"admin_groups": ["admin"], "privileged_groups": ["ingestor"]},
    RUN2: {
        "admin_groups": ["admin", "ingestor"],
        "privileged_groups": ["ingestor"],
        "pid_regex": r"^20\.500\.12269/[0-9a-f-]{36}$",
    },
}
COMMON: dict[str, Any] = {
    "create_dataset_groups": ["group1"],
    "delete_groups": ["admin"],
    "pid_prefix": "20.500.12269",
}

# Values that differ on every run of any backend: ids, clocks, tokens.
VOLATILE = {
    "_id",
    "id",
    "userId",
    "createdAt",
    "updatedAt",
    "created",
    "access_token",
    "dateOfDiskPurging",
    "publishedOn",
    "archiveRetentionTime",
    "dateOfPublishing",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
OBJECT_ID = re.compile(r"[0-9a-f]{24}")

# The one recorded answer no consistent rule reproduces. In run 1 the privileged-only
# ingestor's `datasets/count?filter={"where":{"ownerGroup":"p1234"}}` returned 22, while the
# same run's list and findOne returned []/null (nothing readable) and the run's database held
# only 12 p1234 datasets at that point (run 2's list shows the database started empty). 22 is
# exactly run 2's count, so it most likely leaked from the other run into the recording. The
# stand-in keeps rule 19 (count restricted to readable datasets -> 0); this entry checks shape.
COUNT_EXEMPTION = (RUN1, "v3 GET datasets/count")


def _entries(name: str) -> list[dict[str, Any]]:
    assert OBSERVED is not None
    data: list[dict[str, Any]] = json.loads((OBSERVED / name).read_text())
    return data


def _account(label: str) -> str | None:
    """Which account a recorded request used, from its label (tokens were redacted)."""
    if "no token" in label:
        return None
    if "bad token" in label:
        return "<bad>"
    if label.startswith(("login", "legacy")) and "login" in label:
        return None
    for user in ("user1", "admin"):
        if re.search(rf"\b{user}\b", label):
            return user
    return "ingestor"


@dataclass
class Replay:
    """The stand-in's answers to one run's entries, plus recorded->actual pid mapping."""

    standin: ScicatStandin
    pids: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def sub(self, text: str) -> str:
        """Replace recorded server-generated pids (raw or %2F-encoded) by the stand-in's."""
        for old, new in self.pids.items():
            text = text.replace(old, new).replace(old.replace("/", "%2F"), new.replace("/", "%2F"))
        return text

    def run(self, entries: list[dict[str, Any]], session: requests.Session) -> None:
        for e in entries:
            self.answers.append(self.send(e, session))

    def send(self, e: dict[str, Any], session: requests.Session) -> tuple[int, Any]:
        who = _account(e["label"])
        headers = {}
        if who == "<bad>":
            headers["Authorization"] = "Bearer eyJhbGciOiJIUzI1NiJ9.e30.invalid-signature"
        elif who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        url = self.standin.base_url + self.sub(e["path"])
        if e["method"] == "POST" and e["request"] is None and "invalid JSON" in e["label"]:
            headers["Content-Type"] = "application/json"
            resp = session.request("POST", url, data=b"{not json", headers=headers, timeout=10)
        elif e["request"] is None:
            resp = session.request(e["method"], url, headers=headers, timeout=10)
        else:
            body = json.loads(self.sub(json.dumps(e["request"])))
            resp = session.request(e["method"], url, json=body, headers=headers, timeout=10)
        got: Any = resp.json() if resp.content else None
        if e["status"] == 201 and isinstance(got, dict) and "access_token" in got:
            self.tokens[e["request"]["username"]] = got["access_token"]
        rec: Any = e["response"]
        rec_pid = rec.get("pid") if isinstance(rec, dict) else None
        got_pid = got.get("pid") if isinstance(got, dict) else None
        if rec_pid and got_pid and rec_pid != got_pid:  # server-generated; later entries use it
            self.pids[rec_pid] = got_pid
        return resp.status_code, got


def _replay(name: str, seed: Replay | None = None) -> Replay:
    standin = ScicatStandin(**{**COMMON, **CONFIGS[name]}).start()
    replay = Replay(standin, pids=dict(seed.pids) if seed else {})
    if seed is not None:
        # run 2 was recorded against run 1's database (its list results include run 1's datasets)
        for doc in seed.standin.datasets.values():
            standin.add_dataset(doc)
    with requests.Session() as session:
        replay.run(_entries(name), session)
    return replay


@pytest.fixture(scope="module")
def replays() -> Iterator[dict[str, Replay]]:
    """Both runs replayed once, in order; each parametrized case then checks one exchange."""
    if OBSERVED is None:
        pytest.skip("shared/reference/scicat-backend/observed not found (set OFFLINE_INGESTOR_SHARED)")
    run1 = _replay(RUN1)
    run2 = _replay(RUN2, seed=run1)
    yield {RUN1: run1, RUN2: run2}
    run1.standin.stop()
    run2.standin.stop()


def _cases() -> list[Any]:
    if OBSERVED is None:
        return [pytest.param(None, 0, id="observed-missing")]
    return [
        pytest.param(name, i, id=f"{name[:4]}-{i:02d}-{e['label']}")
        for name in (RUN1, RUN2)
        for i, e in enumerate(_entries(name))
    ]


def _same(expected: Any, got: Any, where: str, replay: Replay) -> None:
    """Recursive comparison that tolerates only volatile values (ids, clocks, tokens)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        assert set(got) == set(expected), f"{where}: keys differ {set(got) ^ set(expected)}"
        for key, value in expected.items():
            if key in VOLATILE:
                _volatile(key, value, got[key], f"{where}.{key}", replay)
            else:
                _same(value, got[key], f"{where}.{key}", replay)
    elif isinstance(expected, list) and isinstance(got, list):
        assert len(got) == len(expected), f"{where}: {len(got)} items, recorded {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            _same(e, g, f"{where}[{i}]", replay)
    elif isinstance(expected, str):
        assert got == replay.sub(expected), f"{where}: {got!r} != {expected!r}"
    else:
        assert got == expected and type(got) is type(expected), f"{where}: {got!r} != {expected!r}"


def _volatile(key: str, expected: Any, got: Any, where: str, replay: Replay) -> None:
    """A volatile value must still have the recorded form (uuid, ObjectId, Buffer, ISO time)."""
    if isinstance(expected, str) and got == replay.sub(expected):
        return  # e.g. a dataset's _id, which is its pid
    if isinstance(expected, dict):  # ObjectId printed as a Node Buffer by the v4 serialiser
        assert isinstance(got, dict) and len(got["buffer"]["data"]) == 12, where
    elif expected == "<JWT>":
        assert isinstance(got, str) and got.count(".") == 2, where
    elif isinstance(expected, str) and key == "_id" and replay.sub(expected) != expected:
        raise AssertionError(f"{where}: {got!r} != {replay.sub(expected)!r}")  # a mapped pid
    elif isinstance(expected, str):
        for pattern in (UUID, OBJECT_ID, re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")):
            if pattern.fullmatch(expected):
                assert isinstance(got, str) and pattern.fullmatch(got), f"{where}: {got!r}"
                return
        raise AssertionError(f"{where}: unexpected volatile value {expected!r}")


@pytest.mark.parametrize(("name", "index"), _cases())
def test_recorded_exchange(replays: dict[str, Replay], name: str, index: int) -> None:
    """The stand-in answers this recorded exchange with the same status and body shape."""
    entry = _entries(name)[index]
    replay = replays[name]
    status, got = replay.answers[index]
    expected = entry["response"]
    assert status == entry["status"], f"{entry['label']}: {status} {got!r}"
    if (name, entry["label"]) == COUNT_EXEMPTION:
        assert isinstance(got, dict) and set(got) == {"count"} and got["count"] == 0
        return
    message = expected.get("message") if isinstance(expected, dict) else None
    if isinstance(message, str) and "status" in expected and message.startswith("["):
        # v3 400: compare the JSON list inside the message (property, constraints, nesting)
        assert set(got) == {"status", "message"} and got["status"] == 400
        assert json.loads(got["message"]) == json.loads(message)
        return
    _same(expected, got, entry["label"], replay)


def test_login_token_authenticates_without_http() -> None:
    """A token from login_token() is accepted as a Bearer token by whoami."""
    with ScicatStandin() as standin:
        token = standin.login_token("user1")
        resp = requests.get(
            f"{standin.url_v3}/auth/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert resp.status_code == 200
        assert resp.json()["currentGroups"] == ["group1"]


def test_access_token_query_parameter_alone_does_not_authenticate() -> None:
    """``?access_token=`` is not a Bearer header, so a create is anonymous (403)."""
    with ScicatStandin() as standin:
        token = standin.login_token("ingestor")
        resp = requests.post(
            f"{standin.url_v3}/datasets?access_token={token}", json={"type": "raw"}, timeout=5
        )
        assert resp.status_code == 403
        assert resp.json()["message"] == "Forbidden resource"

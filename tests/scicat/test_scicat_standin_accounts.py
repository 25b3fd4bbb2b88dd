"""The stand-in against the second set of recordings: account types, v3/v4, isValid.

``shared/reference/scicat-backend/observed-accounts/probe-requests.json`` is replayed in order
against a stand-in configured like the recorded backend (its README): every status must
agree, error bodies exactly, success bodies by keys (and by value for isValid/counts). The
rows of the SciCat issue's "stand-in must behave like the backend" table are checked one by
one below as well, so they hold without the recordings too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from offline_ingestor.testing import Account, Fault, ScicatStandin


def _shared() -> Path | None:
    """``../shared`` beside the checkout, or ``$OFFLINE_INGESTOR_SHARED``."""
    for candidate in (
        Path(__file__).resolve().parents[3] / "shared",
        Path(os.environ.get("OFFLINE_INGESTOR_SHARED", "/nonexistent")),
    ):
        if (candidate / "reference" / "scicat-backend").is_dir():
            return candidate
    return None


SHARED = _shared()
PROBES = SHARED / "reference/scicat-backend/observed-accounts/probe-requests.json" if SHARED else None
ACCOUNTS = [
    Account("admin", "adminpw", roles=["admin"], global_access=True),
    Account("ingestor", "ingestorpw", roles=["ingestor"], global_access=True),
    Account("user1", "user1pw", roles=["group1"]),
    Account("owningest", "owningestpw", roles=["owngroup"]),
    Account("privingest", "privingestpw", roles=["privgroup"]),
]
SETTINGS: dict[str, Any] = {
    "admin_groups": ["admin", "ingestor"],
    "create_dataset_groups": ["group1"],
    "with_pid_groups": ["owngroup"],
    "privileged_groups": ["privgroup"],
    "delete_groups": ["admin"],
    "pid_prefix": "20.500.12269",
}


def _entries() -> list[dict[str, Any]]:
    assert PROBES is not None
    data: list[dict[str, Any]] = json.loads(PROBES.read_text())
    return data


def _who(label: str) -> str | None:
    """The account of a recorded request, from its label: "(privingest)", "anon", ..."""
    found = re.search(r"\(([^()]+)\)\s*$", label)
    if found:
        return found.group(1)
    return (
        None
        if label.startswith(("login", "legacy", "v4 auth")) or " anon" in label or "anon " in label
        else "ingestor"
    )


def _seed(standin: ScicatStandin, entries: list[dict[str, Any]], instruments: bool = True) -> None:
    """Proposals and instruments as the recorded backend held them (from its answers)."""
    for e in entries:
        body = e["response"]
        if e["status"] == 200 and e["path"].startswith("/v3/proposals/") and isinstance(body, dict):
            standin.add_proposal(body)
        if (
            instruments
            and e["status"] == 200
            and e["path"].startswith("/v3/instruments")
            and isinstance(body, list)
        ):
            for doc in body:
                if doc["pid"] not in {i["pid"] for i in standin_instruments(standin)}:
                    standin.add_instrument(doc)


def standin_instruments(standin: ScicatStandin) -> list[dict[str, Any]]:
    with standin._store.lock:
        return list(standin._store.instruments)


@pytest.fixture(scope="module")
def replay() -> Iterator[list[tuple[int, Any]]]:
    if PROBES is None or not PROBES.exists():
        pytest.skip("shared/reference/scicat-backend/observed-accounts not found")
    entries = _entries()
    with ScicatStandin(list(ACCOUNTS), **SETTINGS) as standin, requests.Session() as session:
        _seed(standin, entries)
        # proposal 443503 is read with 200 only in the flows (recorded on another database)
        flows = json.loads((PROBES.parent / "ingestor-flows-by-account.json").read_text())
        _seed(standin, flows, instruments=False)
        tokens = {a.username: standin.login_token(a.username) for a in ACCOUNTS}
        tokens["<garbage>"] = "eyJhbGciOiJIUzI1NiJ9.e30.invalid-signature"
        tokens["expired token"] = standin.expired_token("ingestor")
        answers = []
        for e in entries:
            who = _who(e["label"])
            headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
            resp = session.request(
                e["method"], standin.base_url + e["path"], json=e["request"], headers=headers, timeout=10
            )
            answers.append((resp.status_code, resp.json() if resp.content else None))
        yield answers


def _cases() -> list[Any]:
    if PROBES is None or not PROBES.exists():
        return [pytest.param(0, id="observed-accounts-missing")]
    return [pytest.param(i, id=f"{i:02d}-{e['label']}") for i, e in enumerate(_entries())]


@pytest.mark.reference
@pytest.mark.parametrize("index", _cases())
def test_recorded_probe(replay: list[tuple[int, Any]], index: int) -> None:
    """Same status; same error body; same keys (and isValid/count values) on success."""
    entry = _entries()[index]
    status, got = replay[index]
    expected = entry["response"]
    assert status == entry["status"], f"{entry['label']}: {status} {got!r}"
    if status >= 400:
        assert got == expected
    elif isinstance(expected, dict):
        assert set(got) == set(expected), set(got) ^ set(expected)
        if "valid" in expected or "count" in expected:
            assert got["valid" if "valid" in expected else "count"] == expected.get(
                "valid", expected.get("count")
            )
        if "scientificMetadata" in expected:
            assert got["scientificMetadata"] == expected["scientificMetadata"]
    elif isinstance(expected, list):
        assert len(got) == len(expected)
    else:
        assert got == expected


# -- the table, row by row ----------------------------------------------------------


@pytest.fixture
def backend() -> Iterator[ScicatStandin]:
    with ScicatStandin(list(ACCOUNTS), **SETTINGS) as standin:
        standin.add_proposal(
            {"proposalId": "443503", "ownerGroup": "ess_proposal_443503", "accessGroups": ["coda"]}
        )
        yield standin


def _get(standin: ScicatStandin, path: str, user: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {standin.login_token(user)}"} if user else {}
    resp = requests.get(standin.base_url + path, headers=headers, timeout=5)
    return resp.status_code, resp.json() if resp.content else None


FORBIDDEN_PROPOSAL = {"message": "Unauthorized to this proposal", "error": "Forbidden", "statusCode": 403}


def test_proposal_anonymous_unknown_and_unreadable(backend: ScicatStandin) -> None:
    """403 "Unauthorized to this proposal" for anonymous and unreadable; 404 for unknown."""
    assert _get(backend, "/v3/proposals/443503") == (403, FORBIDDEN_PROPOSAL)
    assert _get(backend, "/v3/proposals/443503", "owningest") == (403, FORBIDDEN_PROPOSAL)
    assert _get(backend, "/v3/proposals/999999") == (
        404,
        {"message": "Proposal: 999999 not found", "error": "Not Found", "statusCode": 404},
    )
    assert _get(backend, "/v3/proposals/443503", "ingestor")[0] == 200


def test_samples_anonymous_and_v4_absent_dataset(backend: ScicatStandin) -> None:
    assert _get(backend, "/v3/samples?filter=%7B%7D") == (200, [])
    assert _get(backend, "/v4/datasets/20.500.12269%2Fnone", "ingestor") == (
        404,
        {"message": "dataset: null not found", "error": "Not Found", "statusCode": 404},
    )


def _create(standin: ScicatStandin, body: dict[str, Any], user: str = "ingestor", version: str = "v3") -> Any:
    token = standin.login_token(user)
    resp = requests.post(
        f"{standin.base_url}/{version}/datasets",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    return resp.status_code, resp.json()


RAW = {
    "pid": "20.500.12269/row-test",
    "type": "raw",
    "ownerGroup": "p1234",
    "owner": "Ada",
    "contactEmail": "ada@ess.example",
    "sourceFolder": "/data/x",
    "creationTime": "2024-05-01T10:00:00Z",
    "principalInvestigator": "Ada",
    "creationLocation": "ESS",
}


def test_si_units_and_null_ids(backend: ScicatStandin) -> None:
    """valueSI/unitSI only with a unit, converted; absent v3 ids stored as [null]."""
    metadata = {
        "t": {"value": 20, "unit": "degC"},
        "d": {"value": 5, "unit": "mm"},
        "n": {"value": 3, "unit": ""},
    }
    status, created = _create(backend, {**RAW, "scientificMetadata": metadata})
    assert status == 201
    assert created["scientificMetadata"]["t"] == {
        "value": 20,
        "unit": "degC",
        "valueSI": 293.15,
        "unitSI": "K",
    }
    assert created["scientificMetadata"]["d"] == {"value": 5, "unit": "mm", "valueSI": 0.005, "unitSI": "m"}
    assert created["scientificMetadata"]["n"] == {"value": 3, "unit": ""}
    assert created["instrumentIds"] == [None] and created["sampleIds"] == [None]
    assert "instrumentId" not in created and "sampleId" not in created
    _, stored = _get(backend, "/v3/datasets/20.500.12269%2Frow-test", "ingestor")
    assert stored["instrumentId"] is None and stored["sampleId"] is None


def test_odb_isvalid_errors_carry_the_value_and_blocks_list(backend: ScicatStandin) -> None:
    _create(backend, RAW)
    token = backend.login_token("ingestor")
    odb = {
        "datasetId": RAW["pid"],
        "size": "12",
        "dataFileList": [{"path": "a", "size": 1, "time": "2024-01-01"}],
    }
    resp = requests.post(
        f"{backend.url_v3}/origdatablocks/isValid",
        json=odb,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    (error,) = resp.json()["errors"]
    assert error["value"] == "12" and error["property"] == "size"
    assert _get(backend, "/v3/origdatablocks", "admin") == (200, [])


def test_privileged_only_creates_any_group_but_reads_back_403(backend: ScicatStandin) -> None:
    assert _create(backend, RAW, "privingest")[0] == 201
    assert _get(backend, "/v3/datasets/20.500.12269%2Frow-test", "privingest")[0] == 403
    assert _get(backend, "/v3/datasets/20.500.12269%2Frow-test/origdatablocks", "privingest")[0] == 403


def test_crash_between_block_and_totals(backend: ScicatStandin) -> None:
    """The fault stores the block, skips the dataset totals and resets the connection."""
    _create(backend, RAW)
    backend.inject(Fault(method="POST", path_regex="/origdatablocks$", crash_before_totals=True))
    token = backend.login_token("ingestor")
    odb = {
        "datasetId": RAW["pid"],
        "size": 10,
        "dataFileList": [{"path": "a", "size": 10, "time": "2024-01-01"}],
    }
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{backend.url_v3}/origdatablocks",
            json=odb,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    assert len(backend.origdatablocks) == 1
    assert backend.datasets[RAW["pid"]]["size"] == 0 and backend.datasets[RAW["pid"]]["numberOfFiles"] == 0


def test_request_counts_and_latency_option(backend: ScicatStandin, tmp_path: Path) -> None:
    """request_counts() groups by method and route; latency stays within fixed ± jitter."""
    _create(backend, RAW)
    _get(backend, "/v3/datasets/20.500.12269%2Frow-test", "ingestor")
    _get(backend, "/v3/datasets/20.500.12269%2Fother", "ingestor")
    counts = backend.request_counts()
    assert counts["POST /api/v3/datasets"] == 1 and counts["GET /api/v3/datasets/{}"] == 2
    slow = ScicatStandin(latency_ms=40, jitter_ms=20, seed=1)
    delays = [slow.latency_s() for _ in range(200)]
    assert all(0.020 <= d <= 0.060 for d in delays) and len(set(delays)) > 1


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_fields_projection_of_dataset_lists(backend: ScicatStandin, version: str) -> None:
    """``fields`` projects like the backend's ``$project`` (observed on the real one, v3 and v4):
    a list or an object of true values keeps those fields (dotted paths too) and ``_id``; an
    object of false values drops them; an empty one keeps all; a string is a 400."""
    assert _create(backend, {**RAW, "scientificMetadata": {"job_id": {"value": "j", "unit": ""}}})[0] == 201

    def listed(fields: Any, path: str = "datasets") -> tuple[int, Any]:
        query = json.dumps({"fields": fields, "limits": {"limit": 1}})
        return _get(backend, f"/{version}/{path}?filter={quote(query)}", "ingestor")

    pid = RAW["pid"]
    assert listed(["pid", "ownerGroup"]) == (200, [{"_id": pid, "pid": pid, "ownerGroup": "p1234"}])
    assert listed({"pid": 1}) == (200, [{"_id": pid, "pid": pid}])
    job = {"job_id": {"value": "j", "unit": ""}}
    assert listed(["pid", "scientificMetadata.job_id"]) == (
        200,
        [{"_id": pid, "pid": pid, "scientificMetadata": job}],
    )
    status, [without] = listed({"ownerGroup": 0})
    assert status == 200 and "ownerGroup" not in without and without["owner"] == "Ada"
    status, [whole] = listed([])
    assert status == 200 and {"ownerGroup", "owner", "sourceFolder"} <= set(whole)
    assert listed("pid") == (400, "Fields must be an array or a valid projection object")
    if version == "v3":
        assert listed(["pid"], "datasets/findOne") == (200, {"_id": pid, "pid": pid})

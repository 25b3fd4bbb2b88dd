"""Fault injection and token expiry of the SciCat stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from offline_ingestor.testing import Fault, ScicatStandin

PID = "20.500.12269/0b6c2f0e-7c6f-4a55-9d1e-2a4c1f7a9e01"


def _dataset(pid: str = PID) -> dict[str, Any]:
    return {
        "pid": pid,
        "type": "raw",
        "owner": "Jane Doe",
        "contactEmail": "jane@example.com",
        "sourceFolder": "/data/run1",
        "creationTime": "2024-05-01T10:00:00Z",
        "principalInvestigator": "Jane Doe",
        "creationLocation": "/ESS/loki",
        "ownerGroup": "p1234",
    }


ODB = {
    "datasetId": PID,
    "size": 10,
    "dataFileList": [{"path": "a.nxs", "size": 10, "time": "2024-05-01T10:00:00Z"}],
}


@pytest.fixture
def standin() -> Iterator[ScicatStandin]:
    with ScicatStandin() as s:
        yield s


@pytest.fixture
def session(standin: ScicatStandin) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {standin.login_token('ingestor')}"
        yield s


def test_status_fault_n_times_then_success(standin: ScicatStandin, session: requests.Session) -> None:
    """A 503 fault with times=2 fails two matching requests, then the real answer comes back."""
    session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5).raise_for_status()
    standin.inject(Fault(method="POST", path_regex=r"/origdatablocks$", status=503, times=2))
    statuses = [
        session.post(f"{standin.url_v3}/origdatablocks", json=ODB, timeout=5).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 201]
    assert len(standin.origdatablocks) == 1
    assert standin.datasets[PID]["size"] == 10
    assert [s for m, p, s in standin.requests if p.endswith("/origdatablocks")] == [503, 503, 201]


def test_fault_body_and_method_filter(standin: ScicatStandin, session: requests.Session) -> None:
    """A fault only hits its method; the default body is Nest-shaped, a given body is sent."""
    standin.inject(Fault(method="POST", path_regex="/datasets$", status=502, times=None))
    assert session.get(f"{standin.url_v3}/datasets", timeout=5).status_code == 200
    resp = session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert resp.status_code == 502
    assert resp.json() == {"message": "Bad Gateway", "statusCode": 502}
    standin.clear_faults()
    standin.inject(Fault(path_regex="/health$", status=500, body={"oops": True}))
    resp = session.get(f"{standin.url_v3}/health", timeout=5)
    assert (resp.status_code, resp.json()) == (500, {"oops": True})
    assert session.get(f"{standin.url_v3}/health", timeout=5).status_code == 200


def test_reset_connection(standin: ScicatStandin, session: requests.Session) -> None:
    """reset_connection closes the socket with no response; nothing is stored."""
    standin.inject(Fault(method="POST", path_regex="/datasets$", reset_connection=True))
    with pytest.raises(requests.ConnectionError):
        session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert standin.datasets == {}
    resp = session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert resp.status_code == 201


def test_after_handling_stores_but_client_sees_error(
    standin: ScicatStandin, session: requests.Session
) -> None:
    """after_handling performs the create, then answers 500; a retry then sees 409."""
    standin.inject(Fault(method="POST", path_regex="/datasets$", status=500, after_handling=True))
    resp = session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert resp.status_code == 500
    assert PID in standin.datasets
    retry = session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert retry.status_code == 409


def test_after_handling_with_reset(standin: ScicatStandin, session: requests.Session) -> None:
    """after_handling + reset_connection: stored, but the client gets a connection error."""
    standin.inject(Fault(method="POST", path_regex="/datasets$", reset_connection=True, after_handling=True))
    with pytest.raises(requests.ConnectionError):
        session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert PID in standin.datasets


def test_delay_only(standin: ScicatStandin, session: requests.Session) -> None:
    """status=None with delay_s slows the request down and then answers normally."""
    standin.inject(Fault(path_regex="/health$", status=None, delay_s=0.3))
    start = time.monotonic()
    resp = session.get(f"{standin.url_v3}/health", timeout=5)
    assert resp.status_code == 200
    assert time.monotonic() - start >= 0.3


def test_delay_triggers_client_timeout(standin: ScicatStandin, session: requests.Session) -> None:
    """A delay longer than the client's read timeout surfaces as a requests Timeout."""
    standin.inject(Fault(path_regex="/health$", status=None, delay_s=1.0))
    with pytest.raises(requests.Timeout):
        session.get(f"{standin.url_v3}/health", timeout=0.2)


def test_expire_tokens(standin: ScicatStandin, session: requests.Session) -> None:
    """After expire_tokens() every old token gets 401 SESSION_EXPIRED; a new login works."""
    assert session.get(f"{standin.url_v3}/auth/whoami", timeout=5).status_code == 200
    standin.expire_tokens()
    resp = session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5)
    assert resp.status_code == 401
    assert resp.json() == {"message": "SESSION_EXPIRED", "error": "Unauthorized", "statusCode": 401}
    login = requests.post(
        f"{standin.url_v3}/auth/login",
        json={"username": "ingestor", "password": "ingestorpw"},
        timeout=5,
    )
    assert login.status_code == 201
    headers = {"Authorization": f"Bearer {login.json()['id']}"}
    resp = requests.post(f"{standin.url_v3}/datasets", json=_dataset(), headers=headers, timeout=5)
    assert resp.status_code == 201


def test_token_ttl() -> None:
    """Tokens expire on their own after token_ttl_s."""
    with ScicatStandin(token_ttl_s=0.2) as standin:
        headers = {"Authorization": f"Bearer {standin.login_token('ingestor')}"}
        url = f"{standin.url_v3}/auth/whoami"
        assert requests.get(url, headers=headers, timeout=5).status_code == 200
        time.sleep(0.3)
        assert requests.get(url, headers=headers, timeout=5).status_code == 401


def test_reset_keeps_accounts_and_seeded_data(standin: ScicatStandin, session: requests.Session) -> None:
    """reset() forgets datasets, origdatablocks, the log and faults; proposals stay."""
    standin.add_proposal({"proposalId": "443503", "pi_email": "pi@example.com"})
    session.post(f"{standin.url_v3}/datasets", json=_dataset(), timeout=5).raise_for_status()
    standin.inject(Fault(path_regex="/nothing-matches-this$"))
    standin.reset()
    assert standin.datasets == {} and standin.requests == []
    resp = session.get(f"{standin.url_v3}/proposals/443503", timeout=5)
    assert resp.status_code == 200 and resp.json()["pi_email"] == "pi@example.com"
    missing = session.get(f"{standin.url_v3}/proposals/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"


def test_instruments_filter(standin: ScicatStandin, session: requests.Session) -> None:
    """Seeded instruments are found by name with eq and ilike filters."""
    standin.add_instrument({"id": "ins-1", "name": "ODIN", "uniqueName": "ODIN"})
    standin.add_instrument({"id": "ins-2", "name": "LoKI", "uniqueName": "LOKI"})
    url = f"{standin.url_v3}/instruments"
    found = session.get(url, params={"filter": '{"where": {"name": "ODIN"}}'}, timeout=5).json()
    assert [i["id"] for i in found] == ["ins-1"]
    flt = '{"where": {"name": {"ilike": "loki"}}}'
    assert [i["pid"] for i in session.get(url, params={"filter": flt}, timeout=5).json()] == ["ins-2"]


def test_standalone_module_prints_url_and_stops_on_sigterm() -> None:
    """``python -m ...scicat_standin --port 0 --print-url`` serves until SIGTERM."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "offline_ingestor.testing.scicat_standin", "--port", "0", "--print-url"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        assert requests.get(f"{url}/v3/health", timeout=5).json()["status"] == "ok"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

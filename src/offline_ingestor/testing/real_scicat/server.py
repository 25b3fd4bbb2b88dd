"""Run the real SciCat backend (Node) and its database (SecantusDB) on loopback ports.

``RealScicat(run_dir).start()`` builds the backend if needed (:mod:`.build`), starts
``secantusd-py`` (the MongoDB wire protocol, in memory) and ``node dist/main.js`` on free
127.0.0.1 ports, waits for ``/api/v3/health`` and a login, and seeds the proposals and
instruments of :mod:`.accounts`. The backend's ``app.listen(port)`` would bind every
interface: a ``--require`` preload of ours makes every listen bind 127.0.0.1 instead
(the backend's source is never patched).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from ..processes import free_port
from .accounts import GROUP_ENV, INSTRUMENTS, JOB_CONFIG, PASSWORDS, PROPOSALS, functional_accounts
from .build import BackendMissing, BuiltBackend, ensure_built, require_node
from .tripwire import DbTripwire

__all__ = ["LOOPBACK_PRELOAD", "RealScicat", "secantus_binary"]

#: Rewrites every net.Server listen to 127.0.0.1 (a port, a port and host, or an options object).
LOOPBACK_PRELOAD = """\
'use strict';
// offline-ingestor tests: the backend must listen on loopback only (its main.ts binds all).
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    if (first.path === undefined) args[0] = Object.assign({}, first, { host: '127.0.0.1' });
  } else if (typeof first === 'number' || (typeof first === 'string' && /^[0-9]+$/.test(first))) {
    if (typeof args[1] === 'string') args[1] = '127.0.0.1';
    else args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
"""


JWT_SECRET = "offline-ingestor-tests"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    """A compact JWS (what the backend's passport-jwt verifies)."""
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + _b64(signature)


def secantus_binary() -> str:
    """``secantusd-py`` of this virtualenv or PATH; BackendMissing when neither has it."""
    beside = Path(sys.executable).parent / "secantusd-py"
    found = str(beside) if beside.is_file() else shutil.which("secantusd-py")
    if found is None:
        raise BackendMissing(
            "secantusdb is missing: no `secantusd-py` (pip install --pre secantusdb; scripts/setup does it)"
        )
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads (each server is started in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (the script's stop): poll its existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            done = 0
        if done:
            return True
        time.sleep(0.05)
    return False


def stop_pid(pid: int, *, kill: bool = False, timeout: float = 10.0) -> None:
    """SIGTERM (or SIGKILL) the process group of ``pid``; SIGKILL if it outlives ``timeout``."""
    _signal_group(pid, signal.SIGKILL if kill else signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)


class RealScicat:
    """The SciCat backend and its database, started by and for one test session (or a person).

    ``kill()`` SIGKILLs the backend (the database keeps its data), ``restart()`` starts it
    again on the same port; ``admin`` is a logged-in ``requests.Session`` for looking at
    what SciCat holds.
    """

    def __init__(
        self, run_dir: Path, *, backend: BuiltBackend | None = None, port: int = 0, tripwire: bool = False
    ) -> None:
        self.run_dir = run_dir
        self.use_tripwire = tripwire
        self.tripwire: DbTripwire | None = None
        self.backend = backend
        self.port = port or free_port()
        self.db_port = free_port()
        self.node_pid: int | None = None
        self.db_pid: int | None = None
        self._node: subprocess.Popen[bytes] | None = None
        self._db: subprocess.Popen[bytes] | None = None
        self._admin: requests.Session | None = None

    # -- addresses --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def url_v3(self) -> str:
        return self.base_url + "/v3"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> RealScicat:
        """Build if needed, start the database and the backend, wait for health, seed."""
        node, _ = require_node()
        secantus = secantus_binary()
        self.backend = self.backend or ensure_built()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        command = [secantus, "--host", "127.0.0.1", "--port", str(self.db_port), "--storage-path"]
        self._db = self._spawn([*command, ":memory:", "--standalone"], "secantus.log")
        self.db_pid = self._db.pid
        self._wait(lambda: _port_open(self.db_port), timeout, "the database (secantusd-py)", "secantus.log")
        if self.use_tripwire:
            self.tripwire = DbTripwire(self.db_port, self.kill)
        self._start_node(node, timeout)
        self.seed()
        return self

    def _start_node(self, node: str, timeout: float) -> None:
        assert self.backend is not None
        preload = self.run_dir / "loopback-only.js"
        preload.write_text(LOOPBACK_PRELOAD)
        accounts = self.run_dir / "functionalAccounts.json"
        accounts.write_text(json.dumps(functional_accounts(), indent=1))
        job_config = self.run_dir / "jobConfig.yaml"
        job_config.write_text(json.dumps(JOB_CONFIG, indent=1))
        db_port = self.tripwire.port if self.tripwire else self.db_port
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.run_dir),
            "NODE_ENV": "production",
            "MONGODB_URI": f"mongodb://127.0.0.1:{db_port}/scicat",
            "PORT": str(self.port),
            "JWT_SECRET": JWT_SECRET,
            "EXPRESS_SESSION_SECRET": "offline-ingestor-tests",
            "FUNCTIONAL_ACCOUNTS_FILE": str(accounts),
            "JOB_CONFIGURATION_FILE": str(job_config),
            "SITE": "TEST",
            "OPENSEARCH_ENABLED": "no",
            "RABBITMQ_ENABLED": "no",
            "METRICS_ENABLED": "no",
            "LOGBOOK_ENABLED": "no",
            "ELASTICSEARCH_ENABLED": "no",
            **GROUP_ENV,
        }
        # cwd = run_dir: its `dotenv/config` reads a .env there (none), never one of ours.
        self._node = self._spawn(
            [node, "--require", str(preload), str(self.backend.main_js)], "backend.log", env=env
        )
        self.node_pid = self._node.pid
        self._wait(self._logs_in, timeout, "the SciCat backend (health and login)", "backend.log")

    def _spawn(
        self, command: list[str], log: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.run_dir / log).open("ab") as out:
            return subprocess.Popen(
                command,
                cwd=self.run_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own group: stop/kill reach any child too
            )

    def _wait(self, ready: Any, timeout: float, what: str, log: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in (self._db, self._node):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{what}: a server exited ({proc.pid}); {self._tail(log)}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; {self._tail(log)}")

    def _tail(self, log: str) -> str:
        path = self.run_dir / log
        lines = path.read_text(errors="replace").splitlines()[-20:] if path.exists() else []
        return f"last lines of {path}:\n" + "\n".join(lines)

    def _logs_in(self) -> bool:
        try:
            health = requests.get(self.url_v3 + "/health", timeout=2)
            if health.status_code != 200:
                return False
            login = requests.post(
                self.url_v3 + "/auth/login",
                json={"username": "admin", "password": PASSWORDS["admin"]},
                timeout=5,
            )
            return login.status_code == 201
        except requests.RequestException:
            return False

    def seed(self) -> None:
        """POST the proposals and instruments as admin (skipping those that exist)."""
        admin = self.admin
        for proposal in PROPOSALS:
            if admin.get(f"{self.url_v3}/proposals/{proposal['proposalId']}", timeout=10).status_code != 200:
                answer = admin.post(f"{self.url_v3}/proposals", json=proposal, timeout=10)
                answer.raise_for_status()
        for instrument in INSTRUMENTS:
            where = json.dumps({"where": {"name": instrument["name"]}})
            if not admin.get(f"{self.url_v3}/instruments", params={"filter": where}, timeout=10).json():
                admin.post(f"{self.url_v3}/instruments", json=instrument, timeout=10).raise_for_status()

    @property
    def admin(self) -> requests.Session:
        """A session logged in as ``admin`` (logs in again after a restart)."""
        if self._admin is None:
            self._admin = self.session("admin")
        return self._admin

    def session(self, username: str) -> requests.Session:
        """A ``requests.Session`` logged in as ``username`` (Bearer token)."""
        session = requests.Session()
        answer = session.post(
            self.url_v3 + "/auth/login",
            json={"username": username, "password": PASSWORDS[username]},
            timeout=10,
        )
        answer.raise_for_status()
        session.headers["Authorization"] = f"Bearer {answer.json()['id']}"
        return session

    def expired_token(self, username: str) -> str:
        """A JWT for ``username`` signed with the backend's secret that expired an hour ago."""
        answer = requests.post(
            self.url_v3 + "/auth/login",
            json={"username": username, "password": PASSWORDS[username]},
            timeout=10,
        )
        answer.raise_for_status()
        now = int(time.time())
        claims = {**answer.json()["user"], "iat": now - 7200, "exp": now - 3600}
        return _hs256({"alg": "HS256", "typ": "JWT"}, claims, JWT_SECRET)

    def kill(self) -> None:
        """SIGKILL the backend (SciCat dies; the database and its data stay)."""
        node, pid = self._node, self.node_pid
        self.node_pid = self._node = None
        if pid is not None:
            stop_pid(pid, kill=True)
        if node is not None:
            node.wait()
        self._admin = None  # a restarted backend has a new login (same JWT secret, but tidy)

    def restart(self, timeout: float = 120.0) -> None:
        """Start the backend again on the same port and database (after :meth:`kill`)."""
        self.kill()
        node, _ = require_node()
        self._start_node(node, timeout)

    @property
    def alive(self) -> bool:
        return self._node is not None and self._node.poll() is None

    def stop(self) -> None:
        """Stop the backend, then the database (by pid; idempotent)."""
        if self.tripwire is not None:
            self.tripwire.stop()
        for pid in (self.node_pid, self.db_pid):
            if pid is not None:
                stop_pid(pid)
        self.node_pid = self.db_pid = self._node = self._db = None

    def __enter__(self) -> RealScicat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def state(self) -> dict[str, Any]:
        """What ``scripts/scicat-backend status|stop`` need to find the servers again."""
        return {
            "url": self.url_v3,
            "port": self.port,
            "db_port": self.db_port,
            "node_pid": self.node_pid,
            "db_pid": self.db_pid,
            "run_dir": str(self.run_dir),
            "accounts": PASSWORDS,
        }

"""The stand-in as a real loopback HTTP server, with fault injection.

``ScicatStandin`` owns the ``ThreadingHTTPServer`` and is the public facade; the routes
themselves live in ``controllers.Api``.
"""

from __future__ import annotations

import copy
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import store as st
from .controllers import DEFAULT_ACCOUNTS, Api, JsonDict

__all__ = ["Fault", "ScicatStandin"]


@dataclass
class Fault:
    """A scripted failure for the next ``times`` requests matching method and path."""

    method: str | None = None  # None = any method
    path_regex: str = ".*"  # re.search against the request path (no query string)
    status: int | None = 503  # None with delay_s = only slow, then the real answer
    body: Any = None  # None = Nest-shaped {"message", "statusCode"}
    times: int | None = 1  # None = forever
    delay_s: float = 0.0
    reset_connection: bool = False  # close the socket with RST instead of answering
    after_handling: bool = False  # run the real request first, then delay and/or fail the reply
    headers: dict[str, str] = field(default_factory=dict)  # extra reply headers, e.g. Retry-After
    # SciCat dies between its two writes of an origdatablock POST: the block is stored, the
    # dataset's size/numberOfFiles are not updated, and the client's connection is reset.
    crash_before_totals: bool = False
    raw_body: bytes | None = None  # send these bytes as the (2xx or error) body, e.g. an HTML page


@dataclass
class _Faults:
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: list[Fault] = field(default_factory=list)

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.items:
                if fault.method and fault.method.upper() != method:
                    continue
                if not re.search(fault.path_regex, path):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.items.remove(fault)
                return fault
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    api: Api
    faults: _Faults
    log: Callable[[str, str, int], None]
    latency: Callable[[], float]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with a Session expect
    # Headers and body go out in two writes; without TCP_NODELAY the second waits for the
    # client's delayed ACK (~40 ms per request on Linux loopback).
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in records requests in ``ScicatStandin.requests`` instead."""

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        raw = self._body()
        path = self.path.partition("?")[0]
        delay = self.server.latency()
        if delay > 0:
            time.sleep(delay)  # a real SciCat takes 19-61 ms a request
        fault = self.server.faults.take(self.command, path)
        if fault is not None and fault.delay_s and not fault.after_handling:
            time.sleep(fault.delay_s)
        if fault is not None and fault.crash_before_totals:
            fault = Fault(reset_connection=True, after_handling=True)
            self.server.api.request_local.crash_before_totals = True
        failing = fault is not None and (fault.reset_connection or fault.status is not None)
        if fault is not None and failing and not fault.after_handling:
            self._fail(fault, path)
            return
        try:
            status, body = self.server.api.dispatch(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                raw,
                self.headers.get("Content-Type") or "",
            )
        except Exception:  # the backend's AllExceptionsFilter answer; details to stderr
            traceback.print_exc(file=sys.stderr)
            status, body = 500, "Internal server error"
        if fault is not None and fault.after_handling and fault.delay_s:
            time.sleep(fault.delay_s)  # stored, but the answer is late (a client may die meanwhile)
        self.server.api.request_local.crash_before_totals = False
        if fault is not None and failing:
            self._fail(fault, path)
            return
        if fault is not None and fault.raw_body is not None:
            self._send_raw(status, fault.raw_body, path)
            return
        self._send(status, body, path)

    def _send_raw(self, status: int, data: bytes, path: str) -> None:
        self.server.log(self.command, path, status)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, fault: Fault, path: str) -> None:
        if fault.reset_connection:
            self.server.log(self.command, path, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # RST: the client sees "connection reset", no response
            self.close_connection = True
            return
        status = fault.status or 500
        if fault.raw_body is not None:
            self._send_raw(status, fault.raw_body, path)
            return
        body = (
            fault.body
            if fault.body is not None
            else {"message": HTTPStatus(status).phrase, "statusCode": status}
        )
        self._send(status, body, path, fault.headers)

    def _send(self, status: int, body: Any, path: str, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        self.server.log(self.command, path, status)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ScicatStandin:
    """A SciCat backend stand-in on 127.0.0.1 that enforces the contract's rules (§9)."""

    def __init__(
        self,
        accounts: Sequence[st.Account] | None = None,
        *,
        admin_groups: Sequence[str] = ("admin", "ingestor"),
        create_dataset_groups: Sequence[str] = ("group1",),
        privileged_groups: Sequence[str] = ("privgroup",),
        with_pid_groups: Sequence[str] = ("owngroup",),
        delete_groups: Sequence[str] = ("admin",),
        lifecycle_groups: Sequence[str] = (),
        pid_prefix: str | None = "20.500.12269",
        pid_regex: str | None = None,
        token_ttl_s: float = 3600.0,
        port: int = 0,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        seed: int | None = None,
        rewrite_pid_prefix: str = "",
        drop_client_pids: bool = False,
    ) -> None:
        accs = list(accounts if accounts is not None else copy.deepcopy(DEFAULT_ACCOUNTS))
        self._store = st.Store({a.username: a for a in accs}, token_ttl_s=token_ttl_s)
        groups = st.Groups(
            admin_groups,
            create_dataset_groups,
            privileged_groups,
            with_pid_groups,
            delete_groups,
            lifecycle_groups,
        )
        self._api = Api(self._store, st.Policy(groups), pid_prefix, pid_regex)
        self._api.rewrite_pid_prefix = rewrite_pid_prefix  # misbehaving deployments (tests only)
        self._api.drop_client_pids = drop_client_pids
        self._faults = _Faults()
        self._log: list[tuple[float, str, str, int]] = []
        self._kinds: Counter[str] = Counter()
        self._log_lock = threading.Lock()
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms
        self._random = random.Random(seed)
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def rewrite_pid_prefix(self) -> str:
        """Prefix put before every client pid on create ("" = store pids as sent, as SciCat does)."""
        return self._api.rewrite_pid_prefix

    @rewrite_pid_prefix.setter
    def rewrite_pid_prefix(self, prefix: str) -> None:
        self._api.rewrite_pid_prefix = prefix  # a deployment reconfigured under a running worker

    @property
    def drop_client_pids(self) -> bool:
        """Store every new dataset under a pid of SciCat's own, whatever pid was sent."""
        return self._api.drop_client_pids

    @drop_client_pids.setter
    def drop_client_pids(self, drop: bool) -> None:
        self._api.drop_client_pids = drop

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> ScicatStandin:
        """Bind 127.0.0.1 (a free port by default, the same one again after :meth:`stop`) and serve."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        # A restart after stop() binds the same port: clients configured with the URL find it again.
        self._port = server.server_address[1]
        server.api, server.faults, server.log = self._api, self._faults, self._record
        server.latency = self.latency_s
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scicat-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScicatStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api`` (no version segment)."""
        if self._server is None:
            raise RuntimeError("ScicatStandin is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    @property
    def url_v3(self) -> str:
        return self.base_url + "/v3"

    # -- tokens -----------------------------------------------------------------------------
    def login_token(self, username: str) -> str:
        """A valid token for ``username`` without going through HTTP."""
        return self._store.issue_token(username)

    def expired_token(self, username: str) -> str:
        """A token for ``username`` that SciCat already answers with 401 SESSION_EXPIRED."""
        token = self._store.issue_token(username)
        with self._store.lock:
            self._store._tokens[token] = (username, 0.0)
        return token

    def forget_tokens(self) -> None:
        """Every token issued so far becomes anonymous (a SciCat restarted with a new JWT secret)."""
        with self._store.lock:
            self._store._tokens.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far answers 401 SESSION_EXPIRED from now on."""
        self._store.expire_tokens()

    # -- state ------------------------------------------------------------------------------
    @property
    def datasets(self) -> dict[str, JsonDict]:
        """pid -> stored document (a deep copy; mutate through HTTP or ``add_dataset``)."""
        with self._store.lock:
            return copy.deepcopy(self._store.datasets)

    @property
    def origdatablocks(self) -> list[JsonDict]:
        """Stored origdatablocks in creation order (a deep copy)."""
        with self._store.lock:
            return copy.deepcopy(self._store.origdatablocks)

    def add_dataset(self, doc: JsonDict) -> None:
        """Seed a stored dataset document as-is (keyed by its ``pid``)."""
        with self._store.lock:
            self._store.datasets[doc["pid"]] = {**copy.deepcopy(doc), "_id": doc["pid"]}

    def add_proposal(self, doc: JsonDict) -> None:
        """Serve ``doc`` at ``GET /api/v3/proposals/<id>`` (``id`` or ``proposalId``)."""
        pid = str(doc.get("proposalId") or doc.get("id"))
        with self._store.lock:
            self._store.proposals[pid] = {"_id": pid, **copy.deepcopy(doc), "proposalId": pid}

    def add_sample(self, doc: JsonDict) -> None:
        """Serve ``doc`` from ``GET /api/v3/samples?filter=`` (needs ``sampleId``)."""
        with self._store.lock:
            self._store.samples.append({"_id": doc["sampleId"], **copy.deepcopy(doc)})

    @property
    def jobs(self) -> list[JsonDict]:
        """Stored jobs (v4 form) in creation order (a deep copy)."""
        with self._store.lock:
            return copy.deepcopy(self._api.objects.jobs)

    @property
    def samples(self) -> list[JsonDict]:
        """Stored samples, seeded and created (a deep copy)."""
        with self._store.lock:
            return copy.deepcopy(self._store.samples)

    @property
    def job_types(self) -> set[str]:
        """The job types of the stand-in's job configuration (others: 400 ``Invalid job type``)."""
        return self._api.objects.job_types

    def add_instrument(self, doc: JsonDict) -> None:
        """Serve ``doc`` from ``GET /api/v3/instruments?filter=`` (gets ``pid``/``id``/``_id``)."""
        iid = str(doc.get("pid") or doc.get("id") or uuid.uuid4())
        with self._store.lock:
            self._store.instruments.append({"_id": iid, "pid": iid, "id": iid, **copy.deepcopy(doc)})

    # -- faults and log ---------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """Queue a fault; faults are matched in the order they were injected."""
        with self._faults.lock:
            self._faults.items.append(copy.copy(fault))

    @property
    def pending_faults(self) -> int:
        """Injected faults not used up yet (a fault is used when its request arrives)."""
        with self._faults.lock:
            return len(self._faults.items)

    def clear_faults(self) -> None:
        with self._faults.lock:
            self._faults.items.clear()

    def latency_s(self) -> float:
        """Seconds to wait before answering: ``latency_ms`` ± uniform ``jitter_ms``, never < 0."""
        if not self.latency_ms and not self.jitter_ms:
            return 0.0
        with self._log_lock:
            jitter = self._random.uniform(-self.jitter_ms, self.jitter_ms)
        return max(0.0, self.latency_ms + jitter) / 1000

    def _record(self, method: str, path: str, status: int) -> None:
        kind = self._api.route_of(method, path)
        with self._log_lock:
            self._log.append((time.time(), method, path, status))
            self._kinds[kind] += 1

    def request_counts(self) -> dict[str, int]:
        """Answered requests per kind, e.g. ``{"POST /api/v3/datasets": 10, ...}``.

        A kind is the method and the route template (``{}`` for a pid segment, lower case),
        so v3 and v4 count apart; resets (status 0) count too. ``reset()`` clears them.
        """
        with self._log_lock:
            return dict(self._kinds)

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path without query, status) per answered request; status 0 = reset."""
        with self._log_lock:
            return [(method, path, status) for _, method, path, status in self._log]

    def timed_requests(self) -> list[tuple[float, str, str, int]]:
        """:attr:`requests` with the time each was answered (epoch seconds), for rates."""
        with self._log_lock:
            return list(self._log)

    def reset(self) -> None:
        """Forget datasets, origdatablocks, the request log and faults (accounts etc. stay)."""
        with self._store.lock:
            self._store.datasets.clear()
            self._store.origdatablocks.clear()
            self._api.objects.jobs.clear()
        with self._log_lock:
            self._log.clear()
            self._kinds.clear()
        self.clear_faults()

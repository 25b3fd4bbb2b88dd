"""A recording HTTP proxy in front of the real backend (requests per file, what was sent).

``RecordingProxy(target_port).start()`` listens on a free 127.0.0.1 port and forwards every
request to the backend unchanged; ``requests`` keeps (method, path, status) in order,
``exchanges`` the bodies too (for the differential contract test); ``after_forward`` (if
set) is called with (method, path) once a request has been sent on, before its answer is
read: a test can kill the backend a few ms after it forwarded a POST. ``pid_prefix`` (if
set) is put before the ``pid`` of each ``POST .../datasets`` body before it is forwarded: the
backend stores the dataset under the prefixed pid and answers 201 with it, as a deployment
(or proxy) that rewrites the pids it is sent does (issue 25, item 3).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Exchange", "RecordingProxy"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Exchange:
    """One forwarded request and the backend's answer (status 0: no answer, the backend died)."""

    method: str
    path: str
    status: int
    sent: bytes | None
    answer: bytes | None

    @property
    def kind(self) -> str:
        return f"{self.method} {_kind(self.path)}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the proxy records instead
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        proxy = self.server.owner
        body = proxy.rewrite(self.command, self.path, body)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            if proxy.after_forward is not None:
                proxy.after_forward(self.command, self.path)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException):
            proxy.record(self.command, self.path, 0)
            # The backend died under the request: the client sees its connection closed.
            self.close_connection = True
            return
        finally:
            conn.close()
        proxy.record(self.command, self.path, answer.status, body, data)
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: RecordingProxy


class RecordingProxy:
    """Forward 127.0.0.1:<port> to the backend's port, recording each request."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.after_forward: Callable[[str, str], None] | None = None
        self.pid_prefix: str | None = None
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []
        self.exchanges: list[Exchange] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="scicat-proxy")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url_v3(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v3"

    def record(
        self, method: str, path: str, status: int, sent: bytes | None = None, answer: bytes | None = None
    ) -> None:
        with self._lock:
            self.requests.append((method, path, status))
            self.exchanges.append(Exchange(method, path, status, sent, answer))

    def rewrite(self, method: str, path: str, body: bytes | None) -> bytes | None:
        """``body`` as forwarded: a dataset POST's ``pid`` prefixed with ``pid_prefix`` (if set)."""
        prefix = self.pid_prefix
        if prefix is None or method != "POST" or body is None:
            return body
        if not path.split("?", 1)[0].rstrip("/").endswith("/datasets"):
            return body
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        pid = doc.get("pid") if isinstance(doc, dict) else None
        if not isinstance(pid, str) or pid.startswith(prefix):
            return body
        doc["pid"] = prefix + pid
        return json.dumps(doc).encode()

    def counts(self) -> Counter[str]:
        """Requests per kind: ``"POST /api/v3/datasets"``, ``"GET /api/v3/datasets/{}"``, ..."""
        return Counter(f"{method} {_kind(path)}" for method, path, _ in list(self.requests))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.exchanges.clear()

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _kind(path: str) -> str:
    """The route of ``path`` with a pid (``%2F`` inside) replaced by ``{}``, without the query."""
    parts = path.split("?", 1)[0].split("/")
    return "/".join("{}" if "%2F" in part.upper() else part for part in parts)

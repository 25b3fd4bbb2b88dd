"""Shared fixtures: reference data, a real redis-server, the SciCat stand-in, NeXus files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = bool(os.environ.get("CI"))


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (CI has it; a user's clone does not)."""
    candidates = (
        [Path(os.environ["OFFLINE_INGESTOR_SHARED"])] if os.environ.get("OFFLINE_INGESTOR_SHARED") else []
    )
    candidates.append(ROOT.parent / "shared")
    return next((path for path in candidates if (path / "reference").is_dir()), None)


@pytest.fixture(scope="session")
def reference() -> Path:
    """The upstream reference folder; tests that need it skip with a message without it."""
    found = shared_dir()
    if found is None:
        pytest.skip("../shared/reference not found beside the checkout (CI has it); skipping")
    return found / "reference"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of our own on a free loopback port, which tests may kill and restart."""

    def __init__(self, directory: Path, appendonly: bool = True) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                raise RuntimeError("redis-server is not installed (scripts/test installs it)")
            pytest.skip("redis-server not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real Redis per test (with AOF, so a restart keeps its data)."""
    server = RedisServer(tmp_path / "redis-data")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def standin() -> Iterator[Any]:
    """The SciCat stand-in, seeded with the proposals and instruments of the examples."""
    from offline_ingestor.demo import DEMO_INSTRUMENTS, DEMO_PROPOSALS
    from offline_ingestor.testing import ScicatStandin

    with ScicatStandin(admin_groups=["admin", "ingestor"]) as server:
        for proposal in DEMO_PROPOSALS:
            server.add_proposal(proposal)
        for instrument in DEMO_INSTRUMENTS:
            server.add_instrument(instrument)
        yield server


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def make_config(data_root: Path) -> Any:
    """Build a config for the stand-in (shipped schemas); keyword sections override."""
    from offline_ingestor.demo import demo_config

    def build(standin: Any, **overrides: Any) -> Any:
        return demo_config(standin.url_v3, data_root, **overrides)

    return build

"""Real services for tests and benchmarks: a redis-server of one's own, polling helpers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["RedisServer", "WorkerProcess", "free_port", "wait_for"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition", every: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class RedisServer:
    """A redis-server on a free loopback port with AOF, which its owner may kill and restart.

    ``appendfsync`` is ``always`` for tests (a restart loses nothing) and may be
    ``everysec`` (the production setting) for benchmarks.
    """

    def __init__(self, directory: Path, *, appendfsync: str = "always") -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart on the same port and data folder) and wait for PONG."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (scripts/setup installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
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
                "yes",
                "--appendfsync",
                self.appendfsync,
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
        wait_for(self._pong, 10, f"redis-server on port {self.port}")
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Terminate (or SIGKILL) the server and wait for it."""
        if self.process is not None and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


class WorkerProcess:
    """``offline-ingestor worker`` as a subprocess in its own session, ready when its
    heartbeat file appears; tests and benchmarks start, SIGKILL and stop it."""

    def __init__(
        self,
        config: Path,
        log: Path,
        heartbeat: Path,
        concurrency: int = 2,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.config, self.log, self.heartbeat, self.concurrency = config, log, heartbeat, concurrency
        self.env, self.cwd = env, cwd
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line (subclasses may wrap it, e.g. in a profiler)."""
        return [str(Path(sys.executable).parent / "offline-ingestor"), *self.worker_args()]

    def worker_args(self) -> list[str]:
        return [
            "worker",
            "--config",
            str(self.config),
            "--concurrency",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
        ]

    def start(self, wait: bool = True) -> WorkerProcess:
        """Start; with ``wait``, return once the worker is ready (heartbeat file written)."""
        self.heartbeat.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
        if wait:
            wait_for(self.heartbeat.exists, 60, "the worker to be ready")
        return self

    def children(self) -> list[int]:
        """The pool processes (direct children of the main process)."""
        assert self.process is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and children), like a lost node."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 40.0) -> None:
        """Warm shutdown (SIGTERM); SIGKILL the group if it does not end in ``timeout`` s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

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

__all__ = ["RedisServer", "SentinelServer", "WorkerProcess", "free_port", "wait_for"]


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
    ``everysec`` (the production setting) for benchmarks. ``appendonly=False`` runs it
    without any persistence; ``password`` sets ``requirepass`` (and ``masterauth``, so a
    replica of a server with the same password can sync); ``extra_args`` go to redis-server
    (e.g. ``["--replicaof", "127.0.0.1", "6379"]``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendfsync: str = "always",
        appendonly: bool = True,
        password: str = "",
        extra_args: list[str] | None = None,
    ) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart on the same port and data folder) and wait for PONG."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (scripts/setup installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
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
                self.appendfsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--loglevel",
                "warning",
                *auth,
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._pong, 10, f"redis-server on port {self.port}")
        return self

    def _pong(self) -> bool:
        return _ping(self.port, self.password)

    def stop(self, kill: bool = False) -> None:
        """Terminate (or SIGKILL) the server and wait for it."""
        if self.process is not None and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


def _ping(port: int, password: str = "") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class SentinelServer:
    """``redis-server --sentinel`` on a free loopback port, monitoring one master.

    Short timings so that a test sees a failover within seconds: the master is "down" after
    ``down_after_ms`` without an answer, and a quorum of sentinels then promotes a replica.
    """

    def __init__(
        self,
        directory: Path,
        master_port: int,
        *,
        master_name: str = "oi-master",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        auth_pass: str = "",
        password: str = "",
    ) -> None:
        self.directory = directory
        self.password = password  # the sentinel's own requirepass (``sentinel_password``)
        self.master_port = master_port
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.auth_pass = auth_pass
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SentinelServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (scripts/setup installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        name = self.master_name
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.directory}",
            f"sentinel monitor {name} 127.0.0.1 {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            *([f"sentinel auth-pass {name} {self.auth_pass}"] if self.auth_pass else []),
            *([f"requirepass {self.password}"] if self.password else []),
        ]
        # The sentinel rewrites its config file (it records what it learns): one per process.
        conf = self.directory / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [binary, str(conf), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _ping(self.port, self.password), 10, f"redis sentinel on port {self.port}")
        return self

    def master_port_now(self) -> int | None:
        """The port this sentinel currently names as the master's."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(f"SENTINEL get-master-addr-by-name {self.master_name}\r\n".encode())
                reply = sock.recv(256).decode(errors="replace").split("\r\n")
        except OSError:
            return None
        # *2 $9 127.0.0.1 $4 6380
        return int(reply[4]) if len(reply) > 4 and reply[4].isdigit() else None

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(10)


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

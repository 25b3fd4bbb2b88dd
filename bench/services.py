"""The processes a worker benchmark needs: redis-server, the stand-in, Celery workers.

Each is started on a free loopback port, owned by the benchmark and stopped by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from offline_ingestor.testing import scenario
from offline_ingestor.testing.processes import RedisServer, WorkerProcess

from .common import PYTHON, ROOT


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (prefork pool processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(item) for item in out.stdout.split()]


def redis_server(directory: Path) -> RedisServer:
    """A redis-server with the production AOF setting (fsync every second)."""
    return RedisServer(directory, appendfsync="everysec")


class StandinProcess:
    """``python -m bench.standin`` (seeded SciCat stand-in) in a process of its own."""

    def __init__(
        self, stats_file: Path, latency_ms: float = 0.0, jitter_ms: float = 0.0, token_user: str = ""
    ) -> None:
        self.stats_file = stats_file
        self.latency = ["--latency-ms", str(latency_ms), "--jitter-ms", str(jitter_ms)]
        self.token_user = token_user
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        #: A token of ``token_user`` (when given): upstream's offline ingestor logs in only so.
        self.token = ""

    def start(self) -> StandinProcess:
        self.stats_file.unlink(missing_ok=True)
        # The stand-in is the bench's instrument: always this checkout's, also when PYTHONPATH
        # points the code under test at another version (a "before" run).
        path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        self.process = subprocess.Popen(
            [
                str(PYTHON),
                "-m",
                "bench.standin",
                "--stats-file",
                str(self.stats_file),
                *self.latency,
                *(["--token-user", self.token_user] if self.token_user else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the SciCat stand-in did not start")
        if self.token_user:
            self.token = self.process.stdout.readline().strip()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop it and return its stats (requests with answer times, documents stored)."""
        import json

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        return json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}


def write_config(
    path: Path, *, scicat_url: str, broker_url: str, data_root: Path, heartbeat: Path, **sections: Any
) -> Path:
    """The scenario's config (``testing.scenario``) with a worker section; ``sections`` override."""
    queue = {
        "enabled": True,
        "broker_url": broker_url,
        "concurrency": 2,
        "heartbeat_file": str(heartbeat),
        "visibility_timeout_s": 600,
        "task_time_limit_s": 300,
        "retry_backoff_s": 0.2,
        "retry_backoff_max_s": 2,
        **sections.pop("queue", {}),
    }
    scicat = {"timeout": 30, "max_retries": 2, **sections.pop("scicat", {})}
    logging = {"format": "json", "logging_level": "INFO", **sections.pop("logging", {})}
    return scenario.write_config(
        path, scicat_url, data_root, queue=queue, scicat=scicat, logging=logging, **sections
    )


def ingest_env() -> dict[str, str]:
    """Environment for our commands: the stand-in's ingestor password."""
    return {**os.environ, **scenario.INGESTOR_ENV}


class Worker(WorkerProcess):
    """``offline-ingestor worker`` (optionally under ``bench.profiled_worker``) as a subprocess."""

    def __init__(
        self,
        config: Path,
        log: Path,
        heartbeat: Path,
        concurrency: int,
        profile_dir: Path | None = None,
        io: bool = False,
    ) -> None:
        super().__init__(config, log, heartbeat, concurrency, env=ingest_env(), cwd=ROOT)
        self.profile_dir = profile_dir
        self.io = io

    def worker_args(self) -> list[str]:
        io = ["--io"] if self.io else []
        return [
            *super().worker_args()[:1],
            *io,
            *super().worker_args()[1:],
            "-n",
            f"bench-{self.log.stem}@%h",
        ]

    def command(self) -> list[str]:
        if self.profile_dir is None:
            return super().command()
        return [str(PYTHON), "-m", "bench.profiled_worker", str(self.profile_dir), *self.worker_args()]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the main (consumer) process and its pool children."""
        assert self.process is not None
        return {
            "main": cpu_seconds(self.process.pid),
            "children": sum(cpu_seconds(pid) for pid in child_pids(self.process.pid)),
        }

    def stop(self, timeout: float = 60.0) -> None:
        """Warm shutdown with a longer grace period than the tests' (long benchmark queues)."""
        super().stop(timeout)


def noop_worker_env(broker_url: str, work: Path) -> dict[str, str]:
    """The environment of ``celery -A bench.noop_chain worker``: its Redis, and a config naming it.

    Importing our worker app (for its settings) refuses ``celery -A`` without a config (issue
    24); bench/noop_chain.py keeps our worker set-up disconnected, so the floor is unchanged.
    """
    from offline_ingestor.config import CONFIG_ENV

    config = work / "noop.yml"
    config.write_text(json.dumps({"queue": {"enabled": True, "broker_url": broker_url}}))
    return {**os.environ, "NOOP_BROKER": broker_url, CONFIG_ENV: str(config)}

"""Runs of real Celery workers on a real Redis against the stand-in, and the per-process model.

One :func:`run_queue` call = fresh redis-server + fresh stand-in + N workers, the files
enqueued *before* the workers start (a backlog), then timed from the workers' JSON logs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_ingestor.testing.processes import wait_for

from .common import BIN, PYTHON, ROOT, HostLoad, children_cpu_s, median, percentile, summary_ms
from .logparse import StepLog
from .services import StandinProcess, Worker, cpu_seconds, ingest_env, redis_server, write_config


@dataclass
class QueueRun:
    """What one worker run measured."""

    name: str
    files: int
    workers: int
    concurrency: int
    finished: int
    failed: int
    files_per_s: float
    enqueue_per_s: float
    steps: dict[str, dict[str, float]]
    latency: dict[str, float]
    cpu_ms_per_file: dict[str, float]
    scicat_requests: int
    scicat_datasets: int
    scicat_requests_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _count_in_log(path: Path, offset: int, needles: tuple[str, ...]) -> tuple[int, int]:
    """Occurrences of any needle in the file from ``offset``; returns (count, new offset)."""
    if not path.exists():
        return 0, offset
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1  # only whole lines
    chunk = data[:end]
    return sum(chunk.count(needle.encode()) for needle in needles), offset + end


class _Progress:
    """Counts finished + failed files across worker logs, reading only new bytes."""

    def __init__(self, logs: list[Path]) -> None:
        self.offsets = {log: 0 for log in logs}
        self.total = 0

    def update(self) -> int:
        for log, offset in self.offsets.items():
            found, self.offsets[log] = _count_in_log(log, offset, ('"ingest.finished"', '"ingest.failed"'))
            self.total += found
        return self.total


def _enqueue_all(config_path: Path, files: list[Path]) -> float:
    """Claim and publish every file's chain from a producer process; returns files per second."""
    listing = config_path.with_suffix(".files")
    listing.write_text("\n".join(map(str, files)))
    out = subprocess.run(
        [str(PYTHON), "-m", "bench.producer", str(config_path), str(listing)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ingest_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.producer failed ({out.returncode}): {out.stderr[-2000:]}")
    return float(out.stdout.strip())


def _request_rate(stats: dict[str, Any]) -> float:
    times = [item[0] for item in stats.get("requests", []) if item[2] != "/api/v3/auth/login"]
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def run_queue(
    workdir: Path,
    data_root: Path,
    files: list[Path],
    *,
    name: str,
    workers: int = 1,
    concurrency: int = 2,
    profile_dir: Path | None = None,
    scicat: dict[str, Any] | None = None,
    queue: dict[str, Any] | None = None,
    latency_ms: float = 0.0,
    jitter_ms: float = 0.0,
    io_concurrency: int = 0,
) -> QueueRun:
    """Backlog of ``files`` → ``workers`` times prefork(``concurrency``) until all are done.

    ``io_concurrency`` > 0 adds, per worker, ``worker --io`` (threads) for the write steps.
    """
    base = workdir / name
    # A run of the same name before (an interrupted bench) left Redis's AOF and the logs there:
    # its records would make every file "already done" and its log lines count as this run's.
    shutil.rmtree(base, ignore_errors=True)
    redis = redis_server(base / "redis").start()
    standin = StandinProcess(base / "standin.json", latency_ms, jitter_ms).start()
    pool: list[Worker] = []
    if io_concurrency:
        queue = {"io_queue_name": "ingest-io", "io_concurrency": io_concurrency, **(queue or {})}
    try:
        for index in range(workers):
            config = write_config(
                base / f"worker-{index}.yml",
                scicat_url=standin.url,
                broker_url=redis.url,
                data_root=data_root,
                heartbeat=base / f"heartbeat-{index}",
                queue={"concurrency": concurrency, **(queue or {})},
                scicat=scicat or {},
            )
            pool.append(
                Worker(
                    config,
                    base / f"worker-{index}.log",
                    base / f"heartbeat-{index}",
                    concurrency,
                    profile_dir / f"w{index}" if profile_dir else None,
                )
            )
            if io_concurrency:
                io_config = write_config(
                    base / f"worker-{index}-io.yml",
                    scicat_url=standin.url,
                    broker_url=redis.url,
                    data_root=data_root,
                    heartbeat=base / f"heartbeat-{index}-io",
                    queue={"concurrency": concurrency, **(queue or {})},
                    scicat=scicat or {},
                )
                io_log, io_beat = base / f"worker-{index}-io.log", base / f"heartbeat-{index}-io"
                pool.append(Worker(io_config, io_log, io_beat, io_concurrency, io=True))
        enqueue_rate = _enqueue_all(pool[0].config, files)
        for worker in pool:
            worker.start(wait=False)
        for worker in pool:
            wait_for(worker.heartbeat.exists, 60, "a worker to be ready")
        others = {"redis": redis.process.pid, "standin": standin.process.pid}  # type: ignore[union-attr]
        cpu_before = _cpu(pool, others)
        load = HostLoad()
        progress = _Progress([worker.log for worker in pool])
        wait_for(lambda: progress.update() >= len(files), 120 + len(files) / 2, f"{len(files)} files", 0.5)
        cpu_after = _cpu(pool, others)
        host = load.finish(sum(cpu_after.values()) - sum(cpu_before.values()))
    finally:
        for worker in pool:
            worker.stop()
        stats = standin.stop()
        redis.stop()
    log = StepLog.read(worker.log for worker in pool)
    done = len(log.complete_jobs())
    cpu = {key: round((cpu_after[key] - cpu_before[key]) * 1000 / max(done, 1), 2) for key in cpu_before}
    latencies = log.latencies_ms()
    return QueueRun(
        name=name,
        files=len(files),
        workers=workers,
        concurrency=concurrency,
        finished=log.finished,
        failed=log.failed,
        files_per_s=round(log.throughput(), 1),
        enqueue_per_s=round(enqueue_rate, 1),
        steps=log.step_durations(),
        latency={**summary_ms(latencies), "max_ms": round(max(latencies), 1)},
        cpu_ms_per_file=cpu,
        scicat_requests=len(stats.get("requests", [])),
        scicat_datasets=int(stats.get("datasets", 0)),
        scicat_requests_per_s=round(_request_rate(stats), 1),
        extra={"retries": log.retries, "window_s": round(log.window()[1] - log.window()[0], 2), "host": host},
    )


def _cpu(pool: list[Worker], others: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every process taking part, by role."""
    usage = {role: cpu_seconds(pid) for role, pid in others.items()}
    usage["worker_main"] = sum(worker.cpu()["main"] for worker in pool)
    usage["worker_children"] = sum(worker.cpu()["children"] for worker in pool)
    return usage


def run_process_per_file(workdir: Path, data_root: Path, files: list[Path], parallel: int) -> dict[str, Any]:
    """ESS today: one ``scicat_background_ingestor`` process per file, ``parallel`` at a time."""
    base = workdir / "process-per-file"
    load, own0 = HostLoad(), children_cpu_s()
    standin = StandinProcess(base / "standin.json").start()
    try:
        config = write_config(
            base / "direct.yml",
            scicat_url=standin.url,
            broker_url="redis://127.0.0.1:1/0",
            data_root=data_root,
            heartbeat=base / "unused",
            queue={"enabled": False},
            logging={"format": "json", "logging_level": "WARNING"},
        )
        command = [str(BIN / "scicat_background_ingestor"), "-c", str(config), "--nexus-file"]

        def one(path: Path) -> tuple[float, int]:
            started = time.perf_counter()
            done = subprocess.run([*command, str(path)], capture_output=True, env=ingest_env(), check=False)
            return time.perf_counter() - started, done.returncode

        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as executor:
            results = list(executor.map(one, files))
        elapsed = time.perf_counter() - started
    finally:
        stats = standin.stop()
    host = load.finish(children_cpu_s() - own0)  # the calls and the stand-in, reaped
    per_file = [seconds * 1000 for seconds, _ in results]
    return {
        "host": host,
        "files": len(files),
        "parallel": parallel,
        "failures": sum(1 for _, code in results if code != 0),
        "files_per_s": round(len(files) / elapsed, 2),
        "per_process_ms": {"median": round(median(per_file), 1), "p95": round(percentile(per_file, 0.95), 1)},
        "scicat_datasets": int(stats.get("datasets", 0)),
    }

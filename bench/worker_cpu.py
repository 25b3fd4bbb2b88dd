"""Worker CPU per file against Celery's own no-op five-task chain, pair by pair (issue 26, target 3).

``python -m bench.worker_cpu [--files N] [--rounds R] [--profile DIR]``: each round runs, in
an order that alternates, (a) ``celery worker`` on :mod:`bench.noop_chain` (the same
``celery_settings``, prefork c=2) with N five-task no-op chains and (b) ``offline-ingestor
worker`` (prefork c=2) with N small YMIR files against an instant SciCat stand-in (own
process). Each against a fresh redis-server. Both workers start on an empty queue; once their
CPU has settled (start-up done), the work is published by a separate process and the CPU the
worker's whole process tree used until the last file/chain is done is read from ``/proc``
(``utime + stime`` of every live process of the tree, plus ``cutime + cstime``: reaped
children). Per file: worker tree and redis-server; ours ÷ no-op per round; the host's load
and the CPU other processes used (``common.HostLoad``).

``--profile DIR`` also runs each worker once under ``py-spy record --subprocesses`` (PyPI
``py-spy``; ``--nonblocking``, not timed) and prints where the samples went, by subsystem
(:func:`buckets`). Wall time and files/s are reported but not compared: the host is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from offline_ingestor.testing.processes import wait_for

from .common import BIN, PYTHON, ROOT, HostLoad, spread
from .corpus import small_files
from .services import (
    StandinProcess,
    Worker,
    cpu_seconds,
    ingest_env,
    noop_worker_env,
    redis_server,
    write_config,
)
from .worker_runs import _Progress

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), sum(int(value) for value in fields[11:15]) / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every descendant, live or reaped."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            table[int(entry)] = found
    wanted, total, changed = {root}, 0.0, True
    while changed:
        changed = False
        for pid, (parent, _) in table.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    for pid in wanted:
        total += table.get(pid, (0, 0.0))[1]
    return total


def settle(root: int, quiet_s: float = 0.03, timeout: float = 60.0) -> float:
    """Wait until the tree uses < ``quiet_s`` CPU per half second (start-up done); its CPU then."""
    deadline, last = time.monotonic() + timeout, tree_cpu(root)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = tree_cpu(root)
        if now - last < quiet_s:
            return now
        last = now
    return last


def _pid(process: subprocess.Popen[Any] | None) -> int:
    assert process is not None
    return process.pid


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def _profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
         "--rate", "200", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)


def run_noop(work: Path, count: int, profile: Path | None = None) -> dict[str, Any]:
    """N no-op chains through ``celery worker -A bench.noop_chain`` (c=2)."""
    base = work / "noop"
    shutil.rmtree(base, ignore_errors=True)
    server = redis_server(base / "redis").start()
    env = noop_worker_env(server.url, base)
    worker = subprocess.Popen(
        [str(PYTHON), "-m", "celery", "-A", "bench.noop_chain", "worker", "-c", "2", "-P", "prefork",
         "-Q", "ingest", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    profiler = None
    try:
        client = redis.Redis.from_url(server.url)
        # One chain first, as for ours: each child's first task imports and connects.
        subprocess.run(
            [str(PYTHON), "-m", "bench.noop_chain", "--publish", "1"], env=env, cwd=ROOT, check=True
        )
        wait_for(lambda: int(client.get("noop:done") or 0) >= 1, 60, "the warm-up chain", 0.1)
        cpu0, redis0 = settle(worker.pid), cpu_seconds(_pid(server.process))
        profiler = _profiler(worker.pid, profile) if profile else None
        load, own0, wall0 = HostLoad(), _children_cpu(), time.monotonic()
        subprocess.run(
            [str(PYTHON), "-m", "bench.noop_chain", "--publish", str(count)], env=env, cwd=ROOT, check=True
        )
        wait_for(lambda: int(client.get("noop:done") or 0) >= count + 1, 600, f"{count} no-op chains", 0.1)
        wall = time.monotonic() - wall0
        cpu, redis_cpu = tree_cpu(worker.pid) - cpu0, cpu_seconds(_pid(server.process)) - redis0
        own = cpu + redis_cpu + _children_cpu() - own0 + time.process_time()
        host = load.finish(own)
    finally:
        _stop_profiler(profiler)
        worker.terminate()
        worker.wait(60)
        server.stop(kill=True)
    return _row("no-op chain", count, cpu, redis_cpu, wall, host)


def run_ours(
    work: Path, files: list[Path], profile: Path | None = None, src: Path | None = None
) -> dict[str, Any]:
    """N small files through ``offline-ingestor worker`` (c=2), instant stand-in; with ``src``,
    that version's package (``PYTHONPATH``) for the worker and the producer."""
    saved = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = f"{src}{os.pathsep}{ROOT}"
    try:
        row = _run_ours(work, files, profile)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return {**row, "system": "base" if src is not None else "ours"}


def _run_ours(work: Path, files: list[Path], profile: Path | None) -> dict[str, Any]:
    base = work / "ours"
    shutil.rmtree(base, ignore_errors=True)
    server = redis_server(base / "redis").start()
    standin = StandinProcess(base / "standin.json").start()
    config = write_config(
        base / "worker.yml",
        scicat_url=standin.url,
        broker_url=server.url,
        data_root=work / "data",
        heartbeat=base / "heartbeat",
        queue={"concurrency": 2},
    )
    worker = Worker(config, base / "worker.log", base / "heartbeat", 2)
    profiler = None
    try:
        worker.start(wait=True)
        assert worker.process is not None
        pid = worker.process.pid
        # The first file builds each child's runtime (schemas, SciCat client): start-up, not per file.
        warm = base / "warm.files"
        warm.write_text(str(files[0]))
        subprocess.run([str(PYTHON), "-m", "bench.producer", str(config), str(warm)],
                       cwd=ROOT, env=ingest_env(), check=True, capture_output=True)  # fmt: skip
        progress = _Progress([worker.log])
        wait_for(lambda: progress.update() >= 1, 120, "the warm-up file", 0.2)
        cpu0, redis0, standin0 = (
            settle(pid),
            cpu_seconds(_pid(server.process)),
            cpu_seconds(_pid(standin.process)),
        )
        profiler = _profiler(pid, profile) if profile else None
        load, own0, wall0 = HostLoad(), _children_cpu(), time.monotonic()
        listing = base / "run.files"
        listing.write_text("\n".join(map(str, files[1:])))
        subprocess.run([str(PYTHON), "-m", "bench.producer", str(config), str(listing)],
                       cwd=ROOT, env=ingest_env(), check=True, capture_output=True)  # fmt: skip
        wait_for(lambda: progress.update() >= len(files), 600, f"{len(files)} files", 0.1)
        wall = time.monotonic() - wall0
        cpu, redis_cpu = tree_cpu(pid) - cpu0, cpu_seconds(_pid(server.process)) - redis0
        standin_cpu = cpu_seconds(_pid(standin.process)) - standin0
        own = cpu + redis_cpu + standin_cpu + _children_cpu() - own0 + time.process_time()
        host = load.finish(own)
        failed = worker.log.read_text().count('"ingest.failed"')
    finally:
        _stop_profiler(profiler)
        worker.stop()
        standin.stop()
        server.stop(kill=True)
    row = _row("ours", len(files) - 1, cpu, redis_cpu, wall, host)
    return {**row, "standin_cpu_ms": round(standin_cpu * 1000 / (len(files) - 1), 2), "failed": failed}


def _row(
    system: str, count: int, cpu: float, redis_cpu: float, wall: float, host: dict[str, Any]
) -> dict[str, Any]:
    return {
        "system": system,
        "files": count,
        "worker_cpu_ms": round(cpu * 1000 / count, 2),
        "redis_cpu_ms": round(redis_cpu * 1000 / count, 2),
        "per_s": round(count / wall, 1),
        "host": host,
    }


LIVENESS = tuple(
    f"offline_ingestor/{name}.py"
    for name in (
        "queue/heartbeats",
        "worker/heartbeat",
        "worker/liveness",
        "worker/reconciler",
        "worker/running",
    )
)
#: Subsystems, matched on a frame's file path, innermost frame first: ours, then the framework.
OURS = (
    ("logging (structlog, logs.py)", ("structlog/", "offline_ingestor/logs.py", "/logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/", "offline_ingestor/metrics.py")),
    ("ledger (queue/job_store.py)", ("offline_ingestor/queue/job_store.py",)),
    ("liveness (heartbeats, leases)", LIVENESS),
    ("SciCat breaker/gate", ("scicat_breaker.py", "scicat_gate.py", "scicat_prober.py")),
    ("rate limit", ("offline_ingestor/queue/rate_limit.py",)),
    ("message envelope", ("offline_ingestor/worker/envelope.py",)),
    ("SciCat HTTP (requests)", ("requests/", "urllib3/", "http/client.py", "offline_ingestor/scicat/")),
    ("NeXus (h5py)", ("h5py/", "offline_ingestor/files/nexus")),
    ("file list + checksums", ("offline_ingestor/files/",)),
    ("schema engine", ("offline_ingestor/schema/",)),
    ("steps + executor", ("offline_ingestor/ingest/",)),
)
FRAMEWORK = (
    ("kombu", ("kombu/",)),
    ("billiard (pool)", ("billiard/",)),
    ("celery", ("celery/",)),
    ("redis-py (kombu's)", ("redis/",)),
)


def _frame_file(frame: str) -> str:
    return frame.rsplit("(", 1)[-1] if "(" in frame else frame


def bucket_of(stack: list[str]) -> str:
    """The subsystem a sample belongs to (``stack`` root first)."""
    files = [_frame_file(frame) for frame in reversed(stack)]
    for rules in (OURS, FRAMEWORK):
        for path in files:
            for name, needles in rules:
                if any(needle in path for needle in needles):
                    return name
    if any("offline_ingestor/" in path for path in files):
        return "our worker glue (worker/*)"
    return "other (stdlib, interpreter)"


def buckets(raw: Path) -> dict[str, Any]:
    """Shares of samples by subsystem, and by process (main = the lowest pid) from a py-spy raw file."""
    counts: Counter[str] = Counter()
    by_process: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack_text, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        stack = stack_text.split(";")
        counts[bucket_of(stack[1:])] += int(number)
        by_process[stack[0]] += int(number)
    total = sum(counts.values()) or 1
    return {
        "samples": total,
        "share": {name: round(100 * value / total, 1) for name, value in counts.most_common()},
        "processes": {name: round(100 * value / total, 1) for name, value in by_process.most_common()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_cpu", description=__doc__)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="also one py-spy run of each, raw stacks to DIR")
    parser.add_argument("--tag", default="", help="name prefix of this run (e.g. the code version)")
    parser.add_argument("--base", type=Path, help="src folder of an older version: a third run per round")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "offline-ingestor-bench" / f"{args.tag}worker-cpu"
    files = small_files(work / "data", args.files + 1, "cpu")
    rows: list[dict[str, Any]] = []
    base: Path | None = Path(args.base).resolve() if args.base else None
    for index in range(args.rounds):
        pair: list[Callable[[], dict[str, Any]]] = [
            lambda: run_noop(work, args.files),
            lambda: run_ours(work, files),
        ]
        if base is not None:
            pair.append(lambda: run_ours(work, files, src=base))
        for run in pair[index % len(pair) :] + pair[: index % len(pair)]:
            row = {"round": index + 1, **run()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    noop = [row for row in rows if row["system"] == "no-op chain"]
    ours = [row for row in rows if row["system"] == "ours"]
    ratios = [a["worker_cpu_ms"] / b["worker_cpu_ms"] for a, b in zip(ours, noop, strict=True)]
    olds = [row for row in rows if row["system"] == "base"]
    summary: dict[str, Any] = {
        "noop_worker_cpu_ms": spread([row["worker_cpu_ms"] for row in noop], 2),
        "ours_worker_cpu_ms": spread([row["worker_cpu_ms"] for row in ours], 2),
        "noop_redis_cpu_ms": spread([row["redis_cpu_ms"] for row in noop], 2),
        "ours_redis_cpu_ms": spread([row["redis_cpu_ms"] for row in ours], 2),
        "ours_over_noop": spread(ratios, 2),
        "others_cores": spread([row["host"]["others_cores"] for row in rows], 2),
        "loadavg": sorted({row["host"]["loadavg_start"].split()[0] for row in rows}),
    }
    if olds:
        summary["base_worker_cpu_ms"] = spread([row["worker_cpu_ms"] for row in olds], 2)
        summary["base_over_noop"] = spread(
            [a["worker_cpu_ms"] / b["worker_cpu_ms"] for a, b in zip(olds, noop, strict=True)], 2
        )
        summary["ours_over_base"] = spread(
            [a["worker_cpu_ms"] / b["worker_cpu_ms"] for a, b in zip(ours, olds, strict=True)], 2
        )
    print(json.dumps({"summary": summary}), flush=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        run_noop(work, args.files, profile=args.profile / "noop.txt")
        run_ours(work, files, profile=args.profile / "ours.txt")
        for name in ("noop", "ours"):
            print(json.dumps({"profile": name, **buckets(args.profile / f"{name}.txt")}), flush=True)
    (work / "results.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()

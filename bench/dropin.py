"""The process-per-file drop-in, side by side (issue 14, target 4): ``python -m bench.dropin``.

The ESS online ingestor spawns one ``scicat_background_ingestor`` per file. On the same N
small YMIR files, each mode against its own fresh SciCat stand-in (``bench/standin.py``,
own process) and, for the queue modes, its own fresh redis-server and one worker:

* ``upstream``: upstream's own offline ingestor (``--upstream-command``, e.g. the
  ``scicat_background_ingestor`` of a venv with SciCatProject/scicat-ingestor), when given;
* ``in-process``: our drop-in with the queue off (ingests synchronously);
* ``enqueue``: queue on, no spool: the drop-in claims and publishes itself (Redis, Celery);
* ``spool-first``: queue on with ``queue.spool_dir`` and the worker polling it: the fast
  path (``dropin/fast.py``), standard library + PyYAML only.

Two calls at a time (the online ingestor's usual ``max_offline_ingestors`` on 2 cores). Per
call: CPU (user + sys of the child and its children, from ``wait4``), peak RSS (the child's
``ru_maxrss``), wall time. Per mode: calls/s (spawns only), files/s until the last file is
in SciCat, requests per ingested file at the stand-in; for ``spool-first`` the hand-over
latency, from the drop-in's exit to the worker's claim in Redis (``enqueued_at``). Our source
is byte-compiled first (``compileall``), as an installed package is: with
``PYTHONDONTWRITEBYTECODE`` set and no ``__pycache__`` every call would compile ~50 modules
(~60 ms) again.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import BIN, HostLoad, children_cpu_s, median, percentile, spread
from .corpus import small_files
from .services import StandinProcess, Worker, ingest_env, redis_server, write_config

MODES = ("upstream", "in-process", "enqueue", "spool-first")


#: GNU time execs the call from a small process: its %M is the call's own peak RSS, where a
#: child forked from this (larger) harness would report the harness's peak (ru_maxrss).
GNU_TIME = Path("/usr/bin/time")


def measured_call(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one process to its end: exit status, wall s, CPU s (with its children), peak RSS MB."""
    started = time.perf_counter()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as rss,
    ):
        wrapped = (
            [str(GNU_TIME), "-q", "-f", "%M", "-o", rss.name, *command] if GNU_TIME.exists() else command
        )
        process = subprocess.Popen(wrapped, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        peak_kb = int(Path(rss.name).read_text().split()[-1]) if GNU_TIME.exists() else usage.ru_maxrss
    return {
        "code": process.returncode,
        "exited_at": time.time(),
        "wall_s": time.perf_counter() - started,
        # wait4 counts the call and every process it waited for (the NeXus reader child).
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": peak_kb / 1024,
        "stdout": stdout.strip().splitlines()[-1:] or [""],
        "stderr": stderr.strip().splitlines()[-1:] or [""],
    }


def handover_ms(url: str, calls: list[dict[str, Any]]) -> list[float]:
    """Per spooled call: from the drop-in's exit to its claim in Redis (``enqueued_at``)."""
    import calendar

    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    delays = []
    for call in calls:
        line = call["stdout"][0]
        if not line.startswith("spooled: "):
            continue
        stamp = str(client.hget(f"oi:job:{line.split()[1]}", "enqueued_at") or "")
        if stamp:
            whole, fraction = stamp.rstrip("Z").split(".")
            at = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(fraction) / 1000
            delays.append((at - call["exited_at"]) * 1000)
    return delays


def _jobs_done(url: str, wanted: int) -> bool:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    states = [client.hget(name, "state") for name in client.scan_iter("oi:job:*", count=1000)]
    return sum(1 for state in states if state in ("done", "failed")) >= wanted


def run_mode(
    mode: str, work: Path, data_root: Path, files: list[Path], parallel: int, upstream: list[str]
) -> dict[str, Any]:
    """One mode on fresh services; the figures of its N calls."""
    base = work / mode
    shutil.rmtree(base, ignore_errors=True)  # a fresh Redis (its AOF lives here) and spool
    base.mkdir(parents=True)
    load, own0 = HostLoad(), children_cpu_s()
    standin = StandinProcess(base / "standin.json").start()
    redis = worker = None
    warm_up = 0
    try:
        queue: dict[str, Any] = {"enabled": False}
        broker = "redis://127.0.0.1:1/0"
        if mode in ("enqueue", "spool-first"):
            redis = redis_server(base / "redis")
            redis.start()
            broker = redis.url
            queue = {"enabled": True}
        if mode == "spool-first":
            queue["spool_dir"] = str(base / "spool")
        config = write_config(
            base / "config.yml",
            scicat_url=standin.url,
            broker_url=broker,
            data_root=data_root,
            heartbeat=base / "heartbeat",
            queue=queue,
            logging={"format": "json", "logging_level": "WARNING"},
        )
        env = ingest_env()
        if mode == "upstream":
            command = [*upstream, "-c", str(config), "--nexus-file"]
        else:
            command = [str(BIN / "scicat_background_ingestor"), "-c", str(config), "--nexus-file"]
        if redis is not None:
            worker = Worker(config, base / "worker.log", base / "heartbeat", concurrency=2).start()
        if mode == "spool-first":
            # The first call after a config change validates it in full (slow path) and
            # records it; the fast path starts with the next call.
            (first,) = small_files(data_root, 1, "dropin-warm-up")
            warm = measured_call([*command, str(first)], env)
            assert warm["code"] == 0, warm
            warm_up = 1
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            calls = list(pool.map(lambda path: measured_call([*command, str(path)], env), files))
        spawned = time.perf_counter() - started
        if redis is not None:
            deadline = time.monotonic() + 600
            while not _jobs_done(redis.url, len(files) + warm_up) and time.monotonic() < deadline:
                time.sleep(0.05)
        finished = time.perf_counter() - started
        delays = handover_ms(redis.url, calls) if mode == "spool-first" and redis is not None else []
    finally:
        if worker is not None:
            worker.stop()
        stats = standin.stop()
        if redis is not None:
            redis.stop()
    # Every process of the mode is reaped by now: the calls, worker, Redis and stand-in.
    host = load.finish(children_cpu_s() - own0 + time.process_time())
    cpu = [call["cpu_s"] * 1000 for call in calls]
    rss = [call["rss_mb"] for call in calls]
    datasets = int(stats.get("datasets", 0))
    return {
        "mode": mode,
        "files": len(files),
        "failures": sum(1 for call in calls if call["code"] != 0),
        "fast_path_calls": sum(1 for call in calls if "local worker" in call["stdout"][0]),
        "cpu_ms_per_call": {"median": round(median(cpu), 1), "p95": round(percentile(cpu, 0.95), 1)},
        "peak_rss_mb": {"median": round(median(rss), 1), "max": round(max(rss), 1)},
        "calls_per_s": round(len(files) / spawned, 2),
        "files_per_s": round(len(files) / finished, 2),
        "datasets": datasets,
        "requests_per_file": round(len(stats.get("requests", [])) / max(1, datasets), 2),
        "handover_ms": {"median": round(median(delays), 1), "max": round(max(delays), 1)} if delays else None,
        "first_error": next((call["stderr"][0] for call in calls if call["code"] != 0), ""),
        "host": host,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dropin")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--tag", default="", help="prefix of the row names (e.g. the code version)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--upstream-command",
        default="",
        help="upstream's offline ingestor, e.g. '/tmp/upstream-venv/bin/scicat_background_ingestor'",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every mode, order rotated")
    args = parser.parse_args()
    upstream = shlex.split(args.upstream_command)
    modes = [mode for mode in args.modes if mode != "upstream" or upstream]
    work = Path(tempfile.gettempdir()) / "offline-ingestor-bench" / "dropin"
    data_root = work / "data"
    files = small_files(data_root, args.files, "dropin")
    import offline_ingestor  # the copy the calls run (PYTHONPATH may name an older one)

    compileall.compile_dir(Path(offline_ingestor.__file__).parent, quiet=1)  # as installed: .pyc
    rows = []
    for index in range(args.repeat):
        for mode in modes[index % len(modes) :] + modes[: index % len(modes)]:
            row = run_mode(mode, work, data_root, files, args.parallel, upstream)
            row["mode"] = args.tag + mode
            row["round"] = index + 1
            rows.append(row)
            print(json.dumps(row), flush=True)
    (work / f"{args.tag}results.json").write_text(json.dumps(rows, indent=1))
    for mode in modes:
        mine = [row for row in rows if row["mode"] == args.tag + mode]
        summary = {
            "mode": args.tag + mode,
            "cpu_ms_per_call_median": spread([row["cpu_ms_per_call"]["median"] for row in mine]),
            "files_per_s": spread([row["files_per_s"] for row in mine], 2),
            "others_cores": spread([row["host"]["others_cores"] for row in mine], 2),
        }
        print(json.dumps({"summary": summary}), flush=True)
    print("\n| mode | CPU/call (median, p95) | peak RSS | calls/s | files/s in SciCat | requests/file |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        cpu, rss = row["cpu_ms_per_call"], row["peak_rss_mb"]
        print(
            f"| {row['mode']} | {cpu['median']:.0f} ms, {cpu['p95']:.0f} ms | {rss['median']:.0f} MB "
            f"| {row['calls_per_s']} | {row['files_per_s']} | {row['requests_per_file']} |"
        )


if __name__ == "__main__":
    main()

"""CPU of one file's ledger and heartbeat calls, this version against an older one (issue 26 target 3).

``python -m bench.ledger_cpu [--files N] [--rounds R] --base OLD/src``: per round, in an
order that alternates, a child process per version (``PYTHONPATH``) runs the Redis calls a
worker process makes for one file's six steps (heartbeat beats, ``begin_step``, the running
mark, ``note_write`` on the two write steps that send, ``finish_step``, the lease release)
for N files against one real redis-server, and reports its own CPU per file. No Celery, no
step work: the worker-level harness (``bench/worker_cpu.py``) cannot resolve a 1-2 ms
change on a shared host, this one can. A version from before the fold (``mark_running`` and
the task-start/task-end beats as separate calls) is driven the way its executor drove it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from .common import PYTHON, ROOT, spread
from .services import redis_server

STEPS = ("select-schema", "extract", "build-dataset", "post-dataset", "post-origdatablock", "post-job")
#: Steps that send a write (the stand-in's small file: the dataset and its block).
WRITES = ("post-dataset", "post-origdatablock")


def _one_file(store: Any, beat: Any, index: str, folded: bool) -> None:
    """A file's ledger and heartbeat calls, as the worker makes them."""
    key = f"k{index}"
    job = {"key": key, "file": f"/data/{key}.hdf", "variables": {f"v{i}": "x" * 40 for i in range(40)}}
    store.redis.hset(f"oi:job:{key}", mapping={"state": "queued", "file": job["file"]})
    for step in STEPS:
        last = {"state": "done"} if step == STEPS[-1] else {}
        with beat.running(key, step):
            store.begin_step(key, step, "chain")
            if not folded:
                store.mark_running(key, step, 1)
            if step in WRITES:
                store.note_write(key, step, time.time(), writer="message", window_s=30.0)
            if folded:
                store.finish_step(job, step, release="chain" if last else "", **last)
            else:
                store.finish_step(job, step, **last)
                if last:
                    store.release_lease(key, "chain")


def child(url: str, files: int) -> None:
    """Run in a child process: the calls for ``files`` files, CPU per file as JSON."""
    from offline_ingestor.queue import heartbeats
    from offline_ingestor.queue.heartbeats import ProcessHeartbeat
    from offline_ingestor.queue.job_store import JobStore

    client = redis.Redis.from_url(url, decode_responses=True)
    store = JobStore(client)
    beat = ProcessHeartbeat(lambda: client, interval_s=60, ttl_s=120)
    folded = hasattr(beat, "sending")
    # A pool process's registration (start() without its thread); older versions kept the id.
    heartbeats._BEATING[os.getpid()] = beat if folded else beat.ident  # type: ignore[assignment]
    for index in range(50):
        _one_file(store, beat, f"warm{index}", folded)
    started = time.process_time()
    for index in range(files):
        _one_file(store, beat, str(index), folded)
    cpu_ms = (time.process_time() - started) * 1000 / files
    print(json.dumps({"folded": folded, "cpu_ms": round(cpu_ms, 3)}))


def _run(src: Path, url: str, files: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [str(PYTHON), "-m", "bench.ledger_cpu", "--child", url, "--files", str(files)],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _ratios(rows: list[dict[str, Any]]) -> list[float]:
    """ours ÷ base per round (each round ran both)."""
    cpu = {(row["round"], row["version"]): row["cpu_ms"] for row in rows}
    return [cpu[index, "ours"] / cpu[index, "base"] for index in sorted({row["round"] for row in rows})]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_cpu", description=__doc__)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--base", type=Path, help="src folder of the older version")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.files)
        return
    versions = {"ours": ROOT / "src", **({"base": Path(args.base).resolve()} if args.base else {})}
    server = redis_server(Path(tempfile.mkdtemp(prefix="ledger-cpu-")) / "redis").start()
    rows: list[dict[str, Any]] = []
    try:
        for index in range(args.rounds):
            names = list(versions)[index % 2 :] + list(versions)[: index % 2]
            for name in names:
                rows.append(
                    {"round": index + 1, "version": name, **_run(versions[name], server.url, args.files)}
                )
                print(json.dumps(rows[-1]), flush=True)
                redis.Redis.from_url(server.url).flushall()
    finally:
        server.stop(kill=True)
    summary = {
        name: spread([row["cpu_ms"] for row in rows if row["version"] == name], 2) for name in versions
    }
    if "base" in versions:
        pairs = zip(rows[0::2], rows[1::2], strict=True)
        ratios = [
            next(r["cpu_ms"] for r in pair if r["version"] == "ours")
            / next(r["cpu_ms"] for r in pair if r["version"] == "base")
            for pair in pairs
        ]
        summary["ours_over_base"] = spread(ratios, 2)
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()

"""Redis memory per queued file (issue 14): N files enqueued, no worker running.

``python -m bench.redis_memory [N] [--base SRC]`` starts its own ``redis-server``, enqueues
N small files with the producer (``submit_job``: the claim and the first step's message), and
reports ``INFO memory`` before and after, divided by N: ``used_memory`` as it is, and without
the clients' buffers (``mem_clients_normal``: per connection, not per file, so a fixed
~90 KB that 1,000 files would show as ~90 B each). Per part: the first message's length,
the queue lists' ``MEMORY USAGE`` per file, one file's job record and (older versions) its
document. Each is measured with Redis's default ``hash-max-listpack-value`` (64) and with
256 (the compose file's), in a fresh server each.

``--base SRC`` measures another version's ``src`` folder first (same harness, in a
subprocess with ``PYTHONPATH=SRC``), so that before and after come from one run.
``--done M`` also lets a worker ingest M files (SciCat stand-in) and reports what each
finished file leaves in Redis for ``queue.state_ttl_s``: its record and job document.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis

from offline_ingestor.config import load_config
from offline_ingestor.ingest.job import new_job
from offline_ingestor.producer import submit_job
from offline_ingestor.queue.job_store import PREFIX, JobStore
from offline_ingestor.testing.processes import wait_for

from .common import PYTHON, ROOT
from .corpus import small_files
from .services import StandinProcess, Worker, redis_server, write_config

LISTPACK = "hash-max-listpack-value"
LISTPACK_VALUES = (None, 256)


def measure(work: Path, data_root: Path, count: int, listpack_value: int | None = None) -> dict[str, Any]:
    """Enqueue ``count`` files into a fresh Redis; bytes per file, total and per key kind.

    ``listpack_value`` sets Redis's ``hash-max-listpack-value``: a job record whose file
    path is longer than the default 64 bytes is kept as a hash table, about twice the size.
    """
    files = small_files(data_root, count, "mem")
    shutil.rmtree(work / "redis-memory", ignore_errors=True)  # its AOF would load the last run
    server = redis_server(work / "redis-memory").start()
    try:
        config_path = write_config(
            work / "memory.yml",
            scicat_url="http://127.0.0.1:9/api/v3",
            broker_url=server.url,
            data_root=data_root,
            heartbeat=work / "memory-heartbeat",
        )
        config = load_config(config_path)
        client = redis.Redis.from_url(server.url)
        if listpack_value is not None:
            client.config_set(LISTPACK, listpack_value)
        client.execute_command("MEMORY", "PURGE")  # type: ignore[no-untyped-call]
        before = client.info("memory")
        store = JobStore.for_config(config)
        jobs = [new_job(path, config.ingestion.allowed_data_roots) for path in files]
        statuses = {submit_job(job, config, store=store).status for job in jobs}
        if statuses != {"queued"}:
            raise RuntimeError(f"not all files were queued: {statuses}")
        after = client.info("memory")
        used = int(after["used_memory"]) - int(before["used_memory"])
        clients = int(after["mem_clients_normal"]) - int(before["mem_clients_normal"])
        key = jobs[0]["key"]
        queue = config.queue.queue_name
        queue_keys = [
            name.decode() if isinstance(name, bytes) else str(name) for name in client.keys(f"{queue}*")
        ]
        queue_bytes = sum(int(client.memory_usage(name, samples=0) or 0) for name in queue_keys)
        message = client.lindex(queue_keys[0], 0) if queue_keys else b""
        return {
            "files": count,
            "hash_max_listpack_value": client.config_get(LISTPACK)[LISTPACK],
            "used_memory_per_file_b": round(used / count),
            "per_file_b": round((used - clients) / count),
            "message_b": len(message or b""),
            "queue_per_file_b": round(queue_bytes / count),
            "job_record_b": client.memory_usage(f"{PREFIX}job:{key}", samples=0),
            "job_record_encoding": _text(client.object("encoding", f"{PREFIX}job:{key}")),
            "document_b": client.memory_usage(f"{PREFIX}doc:{key}", samples=0) or 0,
            "keys_per_file": round(int(client.dbsize()) / count, 2),
        }
    finally:
        server.stop(kill=True)


def measure_done(
    work: Path, data_root: Path, count: int, listpack_value: int | None = None
) -> dict[str, Any]:
    """Ingest ``count`` files with a worker; mean bytes of a finished file's record and document.

    ``used_memory_per_file_b`` is what deleting the finished records frees (``used_memory``
    before and after, ÷ ``count``): ``MEMORY USAGE`` plus the keyspace's and the TTLs' entries.
    """
    files = small_files(data_root, count, "mem-done")
    base = work / "redis-memory-done"
    shutil.rmtree(base, ignore_errors=True)
    server = redis_server(base / "redis").start()
    standin = StandinProcess(base / "standin.json").start()
    worker: Worker | None = None
    try:
        config_path = write_config(
            base / "worker.yml",
            scicat_url=standin.url,
            broker_url=server.url,
            data_root=data_root,
            heartbeat=base / "heartbeat",
        )
        config = load_config(config_path)
        client = redis.Redis.from_url(server.url)
        if listpack_value is not None:
            client.config_set(LISTPACK, listpack_value)
        store = JobStore.for_config(config)
        keys = [
            submit_job(new_job(path, config.ingestion.allowed_data_roots), config, store=store).key
            for path in files
        ]
        worker = Worker(config_path, base / "worker.log", base / "heartbeat", 2)
        worker.start(wait=False)

        def all_done() -> bool:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(f"{PREFIX}job:{key}", "state")
            return all(state == b"done" for state in pipe.execute())

        wait_for(all_done, 120 + count, f"{count} files done", 0.5)
        worker.stop()
        worker = None
        fields = {_text(k): _text(v) for k, v in client.hgetall(f"{PREFIX}job:{keys[0]}").items()}
        # The records' share of used_memory (the issue's figure: MEMORY USAGE leaves out the
        # keyspace and expires entries): used_memory before and after deleting them, ÷ M.
        records = [int(client.memory_usage(f"{PREFIX}job:{key}", samples=0) or 0) for key in keys]
        documents = [int(client.memory_usage(f"{PREFIX}doc:{key}", samples=0) or 0) for key in keys]
        encoding = _text(client.object("encoding", f"{PREFIX}job:{keys[0]}"))
        held = int(client.info("memory")["used_memory"])
        client.delete(*[f"{PREFIX}job:{key}" for key in keys], *[f"{PREFIX}doc:{key}" for key in keys])
        freed = held - int(client.info("memory")["used_memory"])
        return {
            "files": count,
            "hash_max_listpack_value": client.config_get(LISTPACK)[LISTPACK],
            "per_file_b": round((sum(records) + sum(documents)) / count),
            "job_record_b": round(sum(records) / count),
            "job_record_encoding": encoding,
            "document_b": round(sum(documents) / count),
            "used_memory_per_file_b": round(freed / count),
            "record_fields": sorted(fields),
            "record_example": fields,
        }
    finally:
        if worker is not None:
            worker.stop()
        standin.stop()
        server.stop(kill=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def measure_all(work: Path, count: int) -> list[dict[str, Any]]:
    """:func:`measure` with each ``hash-max-listpack-value`` of :data:`LISTPACK_VALUES`."""
    return [measure(work, work / "data", count, listpack_value=value) for value in LISTPACK_VALUES]


def measure_base(src: Path, count: int, done: int = 0) -> dict[str, list[dict[str, Any]]]:
    """The same measurements with the package from ``src`` (an older version): its worker too."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [str(PYTHON), "-m", "bench.redis_memory", str(count), "--done", str(done), "--json"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out))


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """The RESULTS.md table: one line per version and listpack setting."""
    lines = [
        "| version | `hash-max-listpack-value` | per file | first message (in its list) "
        "| job record | document | `used_memory` ÷ N |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows:
        lines.append(
            f"| {name} | {row['hash_max_listpack_value']} | **{row['per_file_b']:,} B** "
            f"| {row['message_b']:,} B ({row['queue_per_file_b']:,} B) "
            f"| {row['job_record_b']:,} B ({row['job_record_encoding']}) | {row['document_b']:,} B "
            f"| {row['used_memory_per_file_b']:,} B |"
        )
    return "\n".join(lines)


def done_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """What a finished file keeps: one line per version and listpack setting."""
    lines = [
        "| version | `hash-max-listpack-value` | record (`MEMORY USAGE`) | freed by deleting it "
        "(`used_memory` ÷ M) | document | fields |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows:
        lines.append(
            f"| {name} | {row['hash_max_listpack_value']} | {row['job_record_b']:,} B "
            f"({row['job_record_encoding']}) | **{row['used_memory_per_file_b']:,} B** "
            f"| {row['document_b']:,} B | {len(row['record_fields'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_memory", description=__doc__)
    parser.add_argument("files", nargs="?", type=int, default=1000, help="queued files (0: none)")
    parser.add_argument("--base", type=Path, help="src folder of the version to compare against")
    parser.add_argument("--done", type=int, default=0, help="also measure M files a worker finished")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON only")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "offline-ingestor-bench"
    work.mkdir(exist_ok=True)
    rows: list[tuple[str, dict[str, Any]]] = []
    done_rows: list[tuple[str, dict[str, Any]]] = []
    if args.base is not None:
        base = measure_base(args.base.resolve(), args.files, args.done)
        rows += [("before", row) for row in base["queued"]]
        done_rows += [("before", row) for row in base["done"]]
    rows += [("after", row) for row in (measure_all(work, args.files) if args.files else [])]
    for value in LISTPACK_VALUES if args.done else ():
        done_rows.append(("after", measure_done(work, work / "data", args.done, listpack_value=value)))
    if args.json:
        print(json.dumps({"queued": [row for name, row in rows], "done": [row for name, row in done_rows]}))
        return
    print(json.dumps([{"version": name, **row} for name, row in rows + done_rows], indent=1, default=str))
    if rows:
        print(table(rows))
    if done_rows:
        print(done_table(done_rows))


if __name__ == "__main__":
    main()

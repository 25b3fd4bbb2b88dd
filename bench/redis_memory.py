"""Redis memory per queued file (issue 14): N files enqueued, no worker running.

``python -m bench.redis_memory [N]`` starts its own ``redis-server``, enqueues N small files
with the producer (``submit_job``: job record, document, chain message), and reports
``INFO memory`` used_memory before and after, divided by N, plus ``MEMORY USAGE`` of one
file's job record and document and of the queue list per message.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from offline_ingestor.config import load_config
from offline_ingestor.job import new_job
from offline_ingestor.job_store import PREFIX, JobStore
from offline_ingestor.producer import submit_job

from .corpus import small_files
from .services import redis_server, write_config


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
            client.config_set("hash-max-listpack-value", listpack_value)
        client.execute_command("MEMORY", "PURGE")  # type: ignore[no-untyped-call]
        before = int(client.info("memory")["used_memory"])
        store = JobStore.for_config(config)
        jobs = [new_job(path, config) for path in files]
        statuses = {submit_job(job, config, store=store).status for job in jobs}
        if statuses != {"queued"}:
            raise RuntimeError(f"not all files were queued: {statuses}")
        after = int(client.info("memory")["used_memory"])
        key = jobs[0]["key"]
        queue = config.queue.queue_name
        queue_keys = [
            name.decode() if isinstance(name, bytes) else str(name) for name in client.keys(f"{queue}*")
        ]
        queue_bytes = sum(int(client.memory_usage(name, samples=0) or 0) for name in queue_keys)
        message = client.lindex(queue_keys[0], 0) if queue_keys else b""
        return {
            "files": count,
            "hash_max_listpack_value": client.config_get("hash-max-listpack-value"),
            "used_memory_per_file_b": round((after - before) / count),
            "job_record_b": client.memory_usage(f"{PREFIX}job:{key}", samples=0),
            "document_b": client.memory_usage(f"{PREFIX}doc:{key}", samples=0),
            "queue_per_file_b": round(queue_bytes / count),
            "message_b": len(message or b""),
        }
    finally:
        server.stop(kill=True)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    work = Path(tempfile.gettempdir()) / "offline-ingestor-bench"
    work.mkdir(exist_ok=True)
    data_root = work / "data"
    print(json.dumps(measure(work, data_root, count), indent=1))
    print(json.dumps(measure(work, data_root, count, listpack_value=256), indent=1))


if __name__ == "__main__":
    main()

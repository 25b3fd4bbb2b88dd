"""Celery's own cost per file: five no-op tasks, chained, with our Celery settings.

``python -m bench.noop_chain N`` starts a redis-server, queues N five-task chains of no-op
tasks (the same ``celery_settings`` as the ingestor: late ack, priorities, JSON, prefork
c=2), starts ``celery worker`` on this module and reports chains/s (first task start to
the last chain's end, counted in Redis by the last task). The ingestor's files/s against an
instant stand-in, divided by this, is issue 14's "framework cost" ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery, chain, signals

from offline_ingestor.config import parse_config
from offline_ingestor.worker.app import _full_setup
from offline_ingestor.worker.envelope import _compact_step_messages
from offline_ingestor.worker.settings import celery_settings

# Importing our worker package connects its ``celeryd_init`` set-up (logs, metrics, heartbeats,
# and a refusal to start without our config) and its message trimming for every app: neither
# is the no-op floor's.
signals.celeryd_init.disconnect(_full_setup)
signals.before_task_publish.disconnect(_compact_step_messages)

BROKER = os.environ.get("NOOP_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("noop")
app.conf.update(celery_settings(parse_config({"queue": {"enabled": True, "broker_url": BROKER}})))


@app.task(name="noop.step", acks_late=True)
def step(ref: dict[str, str]) -> dict[str, str]:
    return ref


@app.task(name="noop.last", acks_late=True)
def last(ref: dict[str, str]) -> None:
    client = redis.Redis.from_url(BROKER)
    pipe = client.pipeline()
    pipe.setnx("noop:first", repr(time.time()))
    pipe.incr("noop:done")
    pipe.set("noop:last", repr(time.time()))
    pipe.execute()


def main() -> None:
    from .services import noop_worker_env, redis_server

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    work = Path(tempfile.mkdtemp(prefix="noop-chain-"))
    server = redis_server(work / "redis").start()
    env = noop_worker_env(server.url, work)
    try:
        client = redis.Redis.from_url(server.url)
        subprocess.run(
            [sys.executable, "-m", "bench.noop_chain", "--publish", str(count)], env=env, check=True
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.noop_chain", "worker", "-c", "2", "-P", "prefork",
             "-Q", "ingest", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.time()
        while int(client.get("noop:done") or 0) < count and time.time() - started < 600:
            if worker.poll() is not None:  # not 600 s of waiting for a worker that is gone
                raise SystemExit(f"the no-op worker exited with status {worker.returncode}")
            time.sleep(0.2)
        worker.terminate()
        worker.wait(60)
        first, end = float(client.get("noop:first") or 0), float(client.get("noop:last") or 0)
        done = int(client.get("noop:done") or 0)
        print(json.dumps({"chains": done, "chains_per_s": round((done - 1) / (end - first), 1)}))
    finally:
        server.stop(kill=True)


def publish(count: int) -> None:
    queue = "ingest"
    for index in range(count):
        ref = {"key": f"k{index}", "file": f"/data/file-{index:05d}.hdf"}
        signatures = [step.si(ref).set(queue=queue, priority=9)]
        signatures += [step.s().set(queue=queue, priority=0) for _ in range(3)]
        signatures.append(last.s().set(queue=queue, priority=0))
        chain(*signatures).apply_async()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--publish"]:
        publish(int(sys.argv[2]))
    else:
        main()

"""Redis going away: a restart (AOF) mid-run loses/doubles nothing; Redis unreachable fails enqueue loudly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from helpers import ingestor_cli, wait_for
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, failures, make_files, tally, wait_settled

pytestmark = [pytest.mark.redis, pytest.mark.worker]


@pytest.mark.parametrize(
    "count", [pytest.param(50, id="50-files"), pytest.param(500, id="500-files", marks=pytest.mark.slow)]
)
def test_redis_restart_during_a_run(
    count: int,
    redis_server: Any,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    figures: Any,
) -> None:
    """Redis stopped for 2 s and restarted from its AOF mid-run: every file ingested once after reconnect."""
    # Given a run under way (SciCat answering in ~20 ms so that the run lasts a while)
    files = make_files(data_root, count)
    standin.inject(Fault(status=None, delay_s=0.02, times=None))
    config = fast_config()
    worker = start_worker(config)
    enqueue_all(config, files)
    wait_for(lambda: len(standin.origdatablocks) >= count // 5, timeout=60 + count, what="a fifth of the run")
    # When Redis goes away for a while and comes back with its append-only file
    redis_server.stop()
    time.sleep(2)  # the outage
    redis_server.start()

    # Then the worker reconnects and every file ends with one dataset and one origdatablock
    wait_settled(
        config, count, timeout=120 + count, workers=[worker], what="the run to settle after the restart"
    )
    result = tally(standin, files)
    figures(result, restarts=1)
    assert worker.process.poll() is None
    assert not failures(config)
    assert (result.lost, result.duplicated) == (0, 0)


def test_enqueue_with_redis_unreachable_fails_loudly(
    redis_server: Any, fast_config: Any, data_root: Path, figures: Any
) -> None:
    """With Redis down, enqueue of one file or a batch on stdin exits 75 and says why, on stderr."""
    config = fast_config()
    files = make_files(data_root, 3)
    redis_server.stop()
    one = ingestor_cli("enqueue", "-c", str(config), str(next(iter(files))))
    batch = ingestor_cli("enqueue", "-c", str(config), stdin="\n".join(map(str, files)))
    for result in (one, batch):
        assert result.returncode == 75, result
        assert "cannot reach Redis" in result.stderr and result.stdout == ""
    figures(files=len(files), lost=0, duplicated=0)


def test_closing_a_collected_connection_with_unacked_messages(redis_server: Any) -> None:
    """The close after a connection loss must not raise AttributeError (it stopped the worker).

    Celery's consumer runs ``connection.collect()`` (which detaches the transport) and then
    ``connection.close()``; when the first close of the channel was cut short (it was in
    BRPOP), the second one restored the unacked messages through the detached transport:
    AttributeError "'NoneType' object has no attribute 'hostname'", "Unrecoverable error",
    worker gone. kombu_patches fixes kombu; the messages stay in Redis's unacked hash for
    restore_visible.
    """
    import redis
    from kombu import Connection

    import offline_ingestor.worker.kombu_patches  # noqa: F401  (the patch)

    with Connection(redis_server.url) as connection:
        queue = connection.SimpleQueue("collect-test")
        queue.put({"n": 1})
        queue.get(timeout=5)  # late-acked: held in the channel's QoS, not acked
        assert queue.consumer.channel.qos._delivered
        connection._do_close_transport()  # the state Connection.collect() leaves behind
        connection.close()
    assert redis.Redis.from_url(redis_server.url).hlen("unacked") == 1


@pytest.mark.parametrize("requeue", [None, True], ids=["ack", "reject-requeue"])
def test_acking_on_a_collected_connection_leaves_the_message_unacked(
    redis_server: Any, requeue: bool | None
) -> None:
    """A task finishing after the consumer collected its connection: no AttributeError.

    The worker stopped with "Unrecoverable error: AttributeError" when a late ack (or a
    requeue) met a transport Celery had already detached and kombu built a new pool from it
    (seen in test_redis_restart_during_a_run). kombu_oom leaves the message in the unacked
    hash, for restore_visible: a finished step redelivered is skipped as done.
    """
    import redis
    from kombu import Connection

    import offline_ingestor.worker.kombu_oom
    import offline_ingestor.worker.kombu_patches  # noqa: F401

    with Connection(redis_server.url) as connection:
        queue = connection.SimpleQueue("ack-test")
        queue.put({"n": 1})
        received = queue.get(timeout=5)  # late-acked: held in the channel's QoS
        connection._do_close_transport()  # the state Connection.collect() leaves behind
        channel = received.channel
        channel.__dict__.pop("client", None)  # as after BRPOP: a client and pool built anew
        channel._pool = None
        if requeue:
            received.reject(requeue=True)
        else:
            received.ack()
    assert redis.Redis.from_url(redis_server.url).hlen("unacked") == 1


def test_a_dead_workers_delivery_is_restored_to_the_front_of_its_queue(redis_server: Any) -> None:
    """The reconciler puts a dead worker's unacked message where BRPOP takes the next one, not
    behind the backlog: with ``leftmost=True`` (LPUSH) a restored step waited for every file
    queued before it (133 s after a kill in the 1,000-file chaos run; the goal is 2 min)."""
    import time

    from celery import Celery
    from kombu import Connection

    from offline_ingestor.config import parse_config
    from offline_ingestor.queue.job_store import JobStore
    from offline_ingestor.worker.reconciler import Reconciler

    with Connection(redis_server.url) as connection:
        queue = connection.SimpleQueue("restore-order")
        queue.put({"n": 0})
        held = queue.get(timeout=5)  # delivered to a worker that then dies: unacked
        for n in (1, 2, 3):
            queue.put({"n": n})  # the backlog behind it
        time.sleep(0.1)
        config = parse_config({"queue": {"heartbeat_ttl_s": 0.05, "heartbeat_interval_s": 0.01}})
        app = Celery(broker=redis_server.url)
        store = JobStore.from_url(redis_server.url)
        reconciler = Reconciler(app, config, lambda: store, lambda: 60.0)
        assert reconciler._restore_dead_deliveries({}) == 1
        held.channel.qos._delivered.clear()  # the dead worker's memory is gone with it
        order = [queue.get(timeout=5) for _ in range(4)]
        for message in order:
            message.ack()
    assert [message.payload["n"] for message in order] == [0, 1, 2, 3]

"""What a queued file costs Redis, as a contract, and that every message still gets consumed.

Our producers publish plain-JSON bodies with a trimmed envelope (``worker/envelope.py``,
``worker/settings.py``: ``body_encoding``); a real worker must ingest from them, still read
base64 messages of producers with kombu's defaults, and still run the errback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from helpers import wait_for, ymir_file
from offline_ingestor.config import load_config
from offline_ingestor.producer import enqueue
from offline_ingestor.queue.broker_layout import queue_keys
from offline_ingestor.worker.app import app_for
from offline_ingestor.worker.chain import SUBMIT_TASK, step_signature
from offline_ingestor.worker.envelope import DEFAULT_HEADERS

pytestmark = [pytest.mark.redis, pytest.mark.worker]

#: A first step's message besides its file path (twice: the argument and ``argsrepr`` for
#: Flower) and the producer's host name (``origin``). bench/RESULTS.md: with the job record
#: this keeps a queued file under 2 KB.
MESSAGE_BUDGET_B = 720


def waiting_messages(url: str, queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    return [json.loads(raw) for key in queue_keys(queue) for raw in client.lrange(key, 0, -1)]


def record(url: str, key: str) -> dict[str, str]:
    return redis.Redis.from_url(url, decode_responses=True).hgetall(f"oi:job:{key}")


def test_a_queued_file_is_a_small_plain_json_message_a_worker_ingests(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """The first step as enqueue publishes it: plain JSON, no default-valued header, within
    its budget; a worker then ingests the file from it."""
    # Given a file enqueued with no worker running
    config_path = queue_config()
    config = load_config(str(config_path))
    path = ymir_file(data_root)
    result = enqueue(path, config=config)
    # Then its one message has a plain-JSON body and only headers with something to say
    (message,) = waiting_messages(redis_server.url, config.queue.queue_name)
    assert message["properties"]["body_encoding"] is None
    args, _, _ = json.loads(message["body"])
    assert args == [{"key": result.key, "file": str(path)}]
    headers = message["headers"]
    assert headers["task"] == "offline_ingestor.select_schema" and headers["argsrepr"] == repr(str(path))
    assert headers["root_id"] == headers["id"]
    # (a header with a value of its own stays: e.g. the time limits when the producer's app was
    # configured before the task was bound)
    # (ignore_result depends on whether this test process bound the task before configuring
    # the app: tests/unit/worker/test_envelope.py pins that rule; `enqueue` from the CLI sends none)
    assert not [name for name, default in DEFAULT_HEADERS.items() if headers.get(name, ...) == default]
    assert not {"argsrepr", "kwargsrepr", "reply_to", "correlation_id"} & set(message["properties"])
    raw = json.dumps(message)
    assert len(raw) <= MESSAGE_BUDGET_B + 2 * len(str(path)) + len(headers["origin"]), raw
    # When a worker starts, then the file is ingested from that message
    start_worker(config_path)
    wait_for(lambda: record(redis_server.url, result.key).get("state") == "done", what="the file done")
    assert len(standin.origdatablocks) == 1


def test_a_base64_message_of_another_producer_is_still_consumed(
    standin: Any, start_worker: Any, queue_config: Any, redis_server: Any, data_root: Path
) -> None:
    """A stock Celery app (kombu's default base64 bodies, full envelope) sends
    ``offline_ingestor.submit``: the worker ingests the file."""
    config_path = queue_config()
    queue = load_config(str(config_path)).queue.queue_name
    path = ymir_file(data_root)
    # Given a producer that knows nothing but the broker URL
    stock = Celery("stock", broker=redis_server.url, set_as_current=False)
    stock.send_task(SUBMIT_TASK, args=[str(path)], kwargs={"job_id": "fw-base64"}, queue=queue)
    (message,) = waiting_messages(redis_server.url, queue)
    assert message["properties"]["body_encoding"] == "base64"
    # When a worker runs, then it takes the message and ingests the file
    start_worker(config_path)
    wait_for(lambda: record(redis_server.url, "fw-base64").get("state") == "done", what="the file done")
    assert record(redis_server.url, "fw-base64")["pid"] in standin.datasets


def test_the_errback_still_runs_from_a_trimmed_message(
    start_worker: Any, queue_config: Any, redis_server: Any
) -> None:
    """A step that fails outside the step executor (a reference without its file) is put in
    the failed registry by the errback the trimmed message carries."""
    config_path = queue_config()
    config = load_config(str(config_path))
    start_worker(config_path)
    # When a first step is published the way producers publish it, but its reference lacks the file
    signature = step_signature(app_for(config), "select-schema", {"key": "k-broken", "file": "/x"}, config)
    signature.args = ({"key": "k-broken"},)
    signature.apply_async()
    # Then the errback records it
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    wait_for(lambda: client.hget("oi:failed", "k-broken") is not None, what="the failure recorded")
    failure = json.loads(client.hget("oi:failed", "k-broken") or "{}")
    assert (failure["step"], failure["error_class"]) == ("select-schema", "KeyError")

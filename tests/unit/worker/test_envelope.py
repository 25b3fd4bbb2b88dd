"""envelope.compact on messages Celery itself builds: defaults go, everything else stays."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery

from offline_ingestor.worker.envelope import DEFAULT_HEADERS, compact
from offline_ingestor.worker.metrics_server import _message_body

app = Celery("envelope-test", set_as_current=False)
ERRBACK = app.signature("offline_ingestor.record_failure")


def celery_message(**options: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Headers, properties and body as Celery hands them to ``before_task_publish``."""
    options.setdefault("ignore_result", None)  # what apply_async passes when the task leaves it unset
    message = app.amqp.as_task_v2(
        "task-id", "offline_ingestor.extract", args=({"key": "k", "file": "/d/a.hdf"},), **options
    )
    properties = {**message.properties, "argsrepr": "'/d/a.hdf'", "kwargsrepr": "", "priority": 0}
    return message.headers, properties, message.body


def test_first_step_keeps_only_headers_with_something_to_say() -> None:
    """A first step loses every default-valued header, the repeated properties and the
    result-backend ones; id, task, root_id, origin, argsrepr and priority stay."""
    headers, properties, body = celery_message(argsrepr="'/d/a.hdf'", kwargsrepr="", errbacks=[ERRBACK])
    compact(headers, properties, body)
    assert set(headers) == {"lang", "task", "id", "root_id", "argsrepr", "origin"}
    assert properties == {"priority": 0}
    assert body[2] == {"errbacks": [{"task": "offline_ingestor.record_failure", "args": (), "kwargs": {},
                                     "options": {}}]}  # fmt: skip


def test_a_retry_keeps_its_eta_retries_and_parent() -> None:
    """Values that differ from the worker's defaults (a retry's eta and count, a next step's
    parent, a time limit) are kept as they are."""
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    headers, properties, body = celery_message(
        eta=eta, retries=2, parent_id="p", root_id="r", time_limit=30, kwargsrepr="", errbacks=[ERRBACK]
    )
    compact(headers, properties, body)
    kept = {name: headers[name] for name in set(DEFAULT_HEADERS) & set(headers)}
    assert kept == {"eta": eta.isoformat(), "retries": 2, "parent_id": "p", "timelimit": [30, None]}
    assert headers["root_id"] == "r"


def test_the_callers_errback_signature_is_not_changed() -> None:
    """The message gets a trimmed copy; the signature the caller holds keeps every field."""
    errback = app.signature("offline_ingestor.record_failure")
    headers, properties, body = celery_message(errbacks=[errback])
    compact(headers, properties, body)
    assert errback["immutable"] is False and "subtask_type" in errback
    trimmed = app.signature(body[2]["errbacks"][0])
    assert (trimmed.task, trimmed.args, trimmed.kwargs, bool(trimmed.immutable)) == (
        errback.task,
        (),
        {},
        False,
    )


def test_the_queue_age_gauge_reads_plain_and_base64_bodies() -> None:
    """Our plain-JSON messages and other producers' base64 ones give the same body."""
    body = json.dumps([[{"key": "k"}], {}, {}])
    plain = {"body": body, "properties": {"body_encoding": None}}
    encoded = {"body": base64.b64encode(body.encode()).decode(), "properties": {"body_encoding": "base64"}}
    assert json.loads(_message_body(plain)) == json.loads(_message_body(encoded)) == [[{"key": "k"}], {}, {}]


@pytest.mark.parametrize("value", [None, True])
def test_ignore_result_equal_to_the_tasks_own_setting_goes(value: bool | None) -> None:
    """Whether the producer bound the task before or after configuring the app, it says nothing."""
    headers: dict[str, Any] = {"id": "x", "task": "offline_ingestor.extract", "ignore_result": value}
    compact(headers, {}, None)
    assert "ignore_result" not in headers


def test_ignore_result_false_stays() -> None:
    """False differs from our tasks' setting (True): the worker must see it."""
    headers: dict[str, Any] = {"id": "x", "task": "offline_ingestor.extract", "ignore_result": False}
    compact(headers, {}, None)
    assert headers["ignore_result"] is False

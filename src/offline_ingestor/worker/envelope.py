"""Smaller Celery messages for our step tasks: no header that only repeats Celery's default.

A queued file costs Redis its first step's message (bench/RESULTS.md, Redis memory per
queued file), and Celery writes every header of its protocol into every message, most of
them ``null``, plus the ``argsrepr``/``kwargsrepr`` options a second time among the
properties. Before a step message is published (the ``before_task_publish`` signal, whose
``headers``, ``properties`` and ``body`` are the very objects Celery then publishes) this
drops:

* headers equal to what the worker assumes when they are missing (``celery.worker.request``
  and ``celery.app.task.Context`` read them with these defaults, ``ignore_result`` with the
  task's own setting);
* the property copies of ``argsrepr``/``kwargsrepr`` (the worker and Flower read the
  headers) and ``reply_to``/``correlation_id``, which only a result backend answers (we
  run none: ``worker/settings.py``);
* ``None`` entries of the body's callbacks part (the worker merges it over the same
  defaults), and in its errback signatures ``subtask_type: null`` and ``immutable: false``
  (``celery.canvas.Signature`` reads both with ``dict.get``: missing is the same). The
  errbacks are replaced by trimmed copies: the caller's signature objects stay as they are.

``id``, ``task``, ``root_id`` (the lease owner), ``origin``, ``argsrepr`` (Flower shows the
file) and every non-default value (``eta`` and ``retries`` of a retry, ``parent_id`` of a
next step, the errback) stay. Only our step tasks are touched; messages of other
producers, and any header a worker would read differently when missing, are left as they
are.
"""

from __future__ import annotations

from typing import Any

from celery import signals

__all__ = ["DEFAULT_HEADERS", "RESULT_PROPERTIES", "SAME_AS_THE_TASK", "compact"]

#: Header -> the value the worker uses when the header is missing.
DEFAULT_HEADERS: dict[str, Any] = {
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "parent_id": None,
    "kwargsrepr": "",
    "ignore_result": None,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
#: Header -> a value that says no more than the header's absence: a missing ``ignore_result``
#: means the task's own setting, which ``worker/settings.py`` sets to True for every task (there
#: is no result backend). A producer whose app was configured before the task was bound sends
#: True, one that bound it earlier sends None: both go.
SAME_AS_THE_TASK: dict[str, Any] = {"ignore_result": True}
#: Properties only a result backend reads (replies to the caller).
RESULT_PROPERTIES = ("reply_to", "correlation_id")
_REPEATED_PROPERTIES = ("argsrepr", "kwargsrepr")
#: Signature field -> the value ``Signature`` reads when the field is missing.
_DEFAULT_SIGNATURE_FIELDS: dict[str, Any] = {"subtask_type": None, "immutable": False}


def compact(headers: dict[str, Any], properties: dict[str, Any], body: Any) -> None:
    """Drop, in place, what the worker would assume anyway (module docstring)."""
    for name, default in DEFAULT_HEADERS.items():
        if name in headers and headers[name] == default and type(headers[name]) is type(default):
            del headers[name]
    for name, value in SAME_AS_THE_TASK.items():
        if name in headers and headers[name] is value:
            del headers[name]
    for name in (*_REPEATED_PROPERTIES, *RESULT_PROPERTIES):
        properties.pop(name, None)
    if isinstance(body, tuple | list) and len(body) == 3 and isinstance(body[2], dict):
        embed = body[2]
        for name in [name for name, value in embed.items() if value is None]:
            del embed[name]
        if isinstance(embed.get("errbacks"), list):
            embed["errbacks"] = [_trimmed(errback) for errback in embed["errbacks"]]


def _trimmed(signature: Any) -> Any:
    """A plain-dict copy of a signature without the fields equal to their defaults."""
    if not isinstance(signature, dict) or signature.get("subtask_type") is not None:
        return signature  # a group, chain, ...: left whole
    return {
        name: value
        for name, value in signature.items()
        if not (name in _DEFAULT_SIGNATURE_FIELDS and value is _DEFAULT_SIGNATURE_FIELDS[name])
    }


@signals.before_task_publish.connect
def _compact_step_messages(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    from .chain import TASK_NAMES

    if sender in TASK_NAMES.values() and headers is not None and properties is not None:
        compact(headers, properties, body)

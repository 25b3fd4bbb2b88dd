"""Turn SciCat's error responses (v3 and Nest shapes) into our error classes."""

from __future__ import annotations

import json
from typing import Any

from ..errors import IngestError, ScicatRejected, ScicatUnavailable

__all__ = ["error_for_response", "server_message"]

#: Statuses worth retrying: the server or something in front of it is overloaded.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _v3_constraints(text: str) -> str | None:
    """v3 DTO errors carry a JSON *string* of class-validator errors; flatten it."""
    try:
        items = json.loads(text)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    messages: list[str] = []

    def walk(nodes: list[Any], prefix: str) -> None:
        for node in nodes:
            if not isinstance(node, dict):
                continue
            name = f"{prefix}{node.get('property', '?')}"
            messages.extend(str(text) for text in (node.get("constraints") or {}).values())
            walk(node.get("children") or [], f"{name}.")

    walk(items, "")
    return "; ".join(messages) if messages else None


def server_message(body: Any) -> str:
    """The human part of any SciCat error body, whatever its shape."""
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, list):
            return "; ".join(str(item) for item in message)
        if isinstance(message, str):
            return _v3_constraints(message) or message
        if "errors" in body or "_message" in body:
            return str(body.get("message") or body.get("_message"))
        return json.dumps(body)[:500]
    if body is None:
        return ""
    return str(body)[:500]


def error_for_response(method: str, url_path: str, status: int, body: Any) -> IngestError:
    """The error to raise for a non-2xx answer: transient for 5xx/429, else rejected."""
    detail = server_message(body)
    text = f"SciCat {method} {url_path} answered {status}: {detail}".rstrip(": ")
    if status in TRANSIENT_STATUSES:
        return ScicatUnavailable(text, status=status)
    return ScicatRejected(text, status=status, detail=detail)

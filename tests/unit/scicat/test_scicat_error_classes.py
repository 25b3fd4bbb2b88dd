"""Which SciCat answers are retried: the status table, pinned one status at a time."""

from __future__ import annotations

import pytest

from offline_ingestor.errors import PermanentError, ScicatUnavailable, TransientError, is_transient
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.scicat.errors import error_for_response

PERMANENT = (400, 401, 403, 404, 409, 422)
TRANSIENT = (408, 425, 429, 500, 502, 503, 504)


@pytest.mark.parametrize("status", PERMANENT)
def test_client_errors_are_permanent(status: int) -> None:
    """A 4xx (bad payload, no rights, conflict) is final: retrying cannot change the answer."""
    error = error_for_response("POST", "/api/v3/datasets", status, {"message": "no"})
    assert isinstance(error, PermanentError) and not is_transient(error)
    assert not RetryPolicy(max_retries=5).should_retry(error, 0)
    assert str(status) in str(error)


@pytest.mark.parametrize("status", TRANSIENT)
def test_overload_and_server_errors_are_transient(status: int) -> None:
    """A timeout, 425/429 or 5xx may pass: the step is retried with backoff."""
    error = error_for_response("GET", "/api/v3/proposals/1", status, "<html>busy</html>")
    assert isinstance(error, ScicatUnavailable) and isinstance(error, TransientError)
    assert RetryPolicy(max_retries=5).should_retry(error, 0)
    assert error.status == status

"""A contract-level SciCat backend stand-in: a real loopback HTTP server for tests.

It enforces the rules of ``shared/reference/scicat-backend/CONTRACT.md`` §9 (DTO validation
with class-validator's messages, group permissions, pid rules, origdatablock bookkeeping)
and agrees with the recorded exchanges in ``observed/``; see
``tests/scicat/test_scicat_standin_contract.py``. Faults (status codes, delays, connection resets,
"stored but the client saw an error", an HTML body, SciCat dying between storing an
origdatablock and updating its dataset's totals) can be injected per method and path.

For tests and benchmarks:

* **Accounts** as the backend's ``*_GROUPS`` settings make them (defaults as recorded in
  ``observed-accounts/``): ``ingestor`` (``ADMIN_GROUPS``), ``privingest`` (only
  ``CREATE_DATASET_PRIVILEGED_GROUPS``: creates for any group, reads back only its own),
  ``owningest`` (``CREATE_DATASET_WITH_PID_GROUPS``), ``user1`` (``CREATE_DATASET_GROUPS``:
  own group, no pid). Constructor arguments ``admin_groups``, ``privileged_groups``, ...
* **Latency**: ``ScicatStandin(latency_ms=40, jitter_ms=20)`` waits 40 ms ± 20 ms (uniform)
  before each answer, like a real SciCat (19-61 ms); ``seed=`` makes the jitter repeatable.
  Standalone: ``python -m offline_ingestor.testing.scicat_standin --latency-ms 40 --jitter-ms 20``.
* **Counting requests**: ``standin.request_counts()`` returns answered requests per kind,
  ``{"GET /api/v3/datasets/{}": 12, "POST /api/v3/origdatablocks": 10, ...}`` (method and
  route template; ``{}`` is a pid). ``standin.requests`` keeps each (method, path, status).
* **Crash between block and totals**:
  ``standin.inject(Fault(method="POST", path_regex="/origdatablocks$", crash_before_totals=True))``.
"""

from .server import Fault, ScicatStandin
from .store import Account

__all__ = ["Account", "Fault", "ScicatStandin"]

"""A contract-level SciCat backend stand-in: a real loopback HTTP server for tests.

It enforces the rules of ``shared/reference/scicat-backend/CONTRACT.md`` §9 (DTO validation
with class-validator's messages, group permissions, pid rules, origdatablock bookkeeping)
and agrees with the recorded exchanges in ``observed/``; see
``tests/test_scicat_standin_contract.py``. Faults (status codes, delays, connection resets,
"stored but the client saw an error") can be injected per method and path.
"""

from .server import Fault, ScicatStandin
from .store import Account

__all__ = ["Account", "Fault", "ScicatStandin"]

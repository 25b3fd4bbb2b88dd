"""The per-process cache of schema-variable look-ups, against the SciCat stand-in over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from offline_ingestor.config import Config
from offline_ingestor.errors import ScicatRejected
from offline_ingestor.scicat import ScicatClient
from offline_ingestor.scicat.lookups import LookupCache
from offline_ingestor.testing import ScicatStandin

PROPOSAL = "proposals/443503"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gets(standin: ScicatStandin, path: str) -> int:
    return sum(1 for method, seen, _ in standin.requests if method == "GET" and seen.endswith(path))


@pytest.fixture
def client(standin: ScicatStandin, make_config: Callable[..., Config]) -> ScicatClient:
    return ScicatClient(make_config(standin).scicat)


def test_repeats_within_ttl_come_from_memory(standin: ScicatStandin, client: ScicatClient) -> None:
    """Every file of a proposal asks for it: one GET per TTL, and each caller gets its own copy."""
    clock = Clock()
    lookup = LookupCache(client.get_json, ttl_s=60, clock=clock)
    first = lookup(PROPOSAL)
    first["title"] = "changed by a caller"
    second = lookup(PROPOSAL)
    assert gets(standin, "/proposals/443503") == 1
    assert second["proposalId"] == "443503" and "changed by a caller" not in second.values()
    # After the TTL, SciCat is asked again (a renamed proposal shows up)
    clock.now += 61
    lookup(PROPOSAL)
    assert gets(standin, "/proposals/443503") == 2


def test_a_404_is_never_cached(standin: ScicatStandin, client: ScicatClient) -> None:
    """A proposal created after a 404 is found by the next file; a deleted one is not served."""
    clock = Clock()
    lookup = LookupCache(client.get_json, ttl_s=60, clock=clock)
    for _ in range(2):
        with pytest.raises(ScicatRejected):
            lookup("proposals/999999")
    assert gets(standin, "/proposals/999999") == 2
    standin.add_proposal({"proposalId": "999999"})
    assert lookup("proposals/999999")["proposalId"] == "999999"
    # Deleted in SciCat: once the TTL is over, the 404 is raised, never the old answer
    standin._store.proposals.pop("999999")
    clock.now += 61
    for _ in range(2):
        with pytest.raises(ScicatRejected):
            lookup("proposals/999999")
    assert gets(standin, "/proposals/999999") == 5


def test_ttl_zero_asks_every_time(standin: ScicatStandin, client: ScicatClient) -> None:
    lookup = LookupCache(client.get_json, ttl_s=0)
    lookup(PROPOSAL)
    lookup(PROPOSAL)
    assert gets(standin, "/proposals/443503") == 2

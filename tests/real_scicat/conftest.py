"""The real SciCat backend tier: one backend per session, built once into the cache.

Skipped with a message only when ``../shared`` (the backend's archive) or Node.js is absent;
anything else missing (npm, secantusdb) fails, since ``scripts/setup`` installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from real_world import start_real

from offline_ingestor.testing.real_scicat import RealScicat


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_scicat)


@pytest.fixture(scope="session")
def real_scicat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealScicat]:
    """The session's backend (with a database tripwire); tests tell their data apart by folder."""
    scicat = start_real(tmp_path_factory.mktemp("real-scicat"))
    yield scicat
    scicat.stop()


@pytest.fixture
def alive_scicat(real_scicat: RealScicat) -> RealScicat:
    """The session's backend, restarted first if an earlier test killed it."""
    if not real_scicat.alive:
        real_scicat.restart()
    return real_scicat

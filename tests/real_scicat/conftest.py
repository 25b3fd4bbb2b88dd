"""The real SciCat backend tier: one backend per session, built once into the cache.

Skipped with a message only when ``../shared`` (the backend's archive) or Node.js is absent;
anything else missing (npm, secantusdb) fails, since ``scripts/setup`` installs it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offline_ingestor.testing.real_scicat import BackendMissing, RealScicat, ensure_built, find_shared


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_scicat)


def _skip_reason() -> str | None:
    if find_shared() is None:
        return "../shared not found beside the checkout: the real SciCat backend tier needs its archive"
    if shutil.which("node") is None:
        return "Node.js not installed: the real SciCat backend tier needs `node` (>= 20)"
    return None


def start_real(run_dir: Path, *, tripwire: bool = True) -> RealScicat:
    """Build (once; the time is reported) and start a backend, or skip/fail as the tier's rules say."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    try:
        backend = ensure_built()
    except BackendMissing as exc:
        pytest.fail(str(exc))
    built = time.monotonic()
    scicat = RealScicat(run_dir, backend=backend, tripwire=tripwire).start()
    print(f"real SciCat: build check {built - started:.1f} s, start {time.monotonic() - built:.1f} s")
    return scicat


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

"""Shared fixtures: reference data, a real redis-server, the SciCat stand-in, NeXus files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offline_ingestor.testing.processes import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]

ROOT = Path(__file__).resolve().parents[1]
IN_CI = bool(os.environ.get("CI"))


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (CI has it; a user's clone does not)."""
    candidates = (
        [Path(os.environ["OFFLINE_INGESTOR_SHARED"])] if os.environ.get("OFFLINE_INGESTOR_SHARED") else []
    )
    candidates.append(ROOT.parent / "shared")
    return next((path for path in candidates if (path / "reference").is_dir()), None)


@pytest.fixture(scope="session")
def reference() -> Path:
    """The upstream reference folder; tests that need it skip with a message without it."""
    found = shared_dir()
    if found is None:
        pytest.skip("../shared/reference not found beside the checkout (CI has it); skipping")
    return found / "reference"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real Redis per test (with AOF, so a restart keeps its data)."""
    server = RedisServer(tmp_path / "redis-data")
    try:
        server.start()
    except FileNotFoundError:
        if IN_CI:
            raise
        pytest.skip("redis-server not installed (scripts/setup installs it)")
    yield server
    server.stop(kill=True)


@pytest.fixture
def standin() -> Iterator[Any]:
    """The SciCat stand-in, seeded with the proposals and instruments of the examples."""
    from offline_ingestor.demo import DEMO_INSTRUMENTS, DEMO_PROPOSALS
    from offline_ingestor.testing import ScicatStandin

    with ScicatStandin(admin_groups=["admin", "ingestor"]) as server:
        for proposal in DEMO_PROPOSALS:
            server.add_proposal(proposal)
        for instrument in DEMO_INSTRUMENTS:
            server.add_instrument(instrument)
        yield server


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def make_config(data_root: Path) -> Any:
    """Build a config for the stand-in (shipped schemas); keyword sections override."""
    from offline_ingestor.demo import demo_config

    def build(standin: Any, **overrides: Any) -> Any:
        return demo_config(standin.url_v3, data_root, **overrides)

    return build

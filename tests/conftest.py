"""Fixtures: the package's pytest plugin (real Redis, stand-in, workers) and reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["offline_ingestor.testing.pytest_plugin"]

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(autouse=True)
def _private_learned_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's commands keep what they learn of SciCat (``scicat/learned.py``) to themselves.

    A stand-in on a loopback port an earlier test used is another SciCat with other accounts.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))

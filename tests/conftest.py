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

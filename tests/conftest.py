"""Fixtures: the package's pytest plugin (real Redis, stand-in, workers) and reference data."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["offline_ingestor.testing.pytest_plugin"]

ROOT = Path(__file__).resolve().parents[1]
UNIT_TESTS = ROOT / "tests" / "unit"

#: Seconds before a test fails as hung (pytest-timeout), by its heaviest marker, first match wins.
#: Generous: a hang must fail one named test instead of eating CI's 90 minutes, and a slow
#: loaded 2-core machine must never trip it. Tests with none of these: tests/unit gets
#: UNIT_LIMIT_S, the end-to-end rest pyproject's ``timeout`` (600 s).
MARKER_LIMITS_S = (("slow", 7200.0), ("worker", 1200.0), ("redis", 900.0))
UNIT_LIMIT_S = 120.0
#: pytest-timeout's SIGALRM fails a test only once Python runs again: C code that retries the
#: interrupted call holding the GIL (h5py opening a FIFO) never lets it, nor any Python thread.
#: This long after the limit faulthandler's C watchdog dumps every stack (the hung test's name
#: and line in it) to the real stderr and ends the run, instead of CI's 90 minutes.
BACKSTOP_S = 60.0
_STDERR = pytest.StashKey[int]()


def time_limit(item: pytest.Item) -> float | None:
    """The limit the markers and folder give ``item``; None leaves pyproject's default."""
    for marker, seconds in MARKER_LIMITS_S:
        if item.get_closest_marker(marker) is not None:
            return seconds
    return UNIT_LIMIT_S if UNIT_TESTS in item.path.parents else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test its limit, unless it names its own or the command line names one for all."""
    if not config.pluginmanager.hasplugin("timeout"):
        return
    # A marker beats --timeout; a limit given for the run (e.g. --timeout=0 to debug) wins here.
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return
    for item in items:
        limit = time_limit(item)
        if limit is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


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


def pytest_configure(config: pytest.Config) -> None:
    """Keep the terminal's stderr: during a test pytest captures descriptor 2."""
    config.stash[_STDERR] = os.dup(2)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STDERR in config.stash:
        os.close(config.stash[_STDERR])


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Arm the backstop beside pytest-timeout's signal (None: the plugin still sets that)."""
    if settings.method == "signal" and settings.timeout and _STDERR in item.config.stash:
        faulthandler.dump_traceback_later(
            settings.timeout + BACKSTOP_S, exit=True, file=item.config.stash[_STDERR]
        )


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    """The test ended (passed, or failed by the signal): no backstop."""
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _private_learned_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's commands keep what they learn of SciCat (``scicat/learned.py``) to themselves.

    A stand-in on a loopback port an earlier test used is another SciCat with other accounts.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))

"""A SciCat outage longer than the whole retry budget: files wait for SciCat, then go on (issue 29).

The test config's retry budget (``max_retries`` 6, backoff 0.1 s doubling to 1 s: about 3.5 s)
is far shorter than the outages below; before the breaker every file spent it on the outage
and landed in the failed registry. Each case measures the drain time (SciCat's return to the
last file done) for RELIABILITY.md; nothing asserts on it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import cli, wait_for
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, failures, make_files, settled, tally, unsettled

pytestmark = [pytest.mark.redis, pytest.mark.worker]

FILES = 40
#: Several times the test config's whole retry budget.
OUTAGE_S = 15.0


def refused(standin: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """SciCat's process is gone: connections are refused."""
    return standin.stop, standin.start


def answering_503(standin: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """A gateway in front of a dead SciCat: every request, /health too, answers 503."""
    return (lambda: standin.inject(Fault(status=503, times=None))), standin.clear_faults


def operator_sees_the_outage(config: Path) -> None:
    """``status`` and ``health`` say since when the workers wait for SciCat, and for how many files."""
    status = cli("offline-ingestor", "status", config=config)
    assert status.returncode == 0, status.stderr
    assert re.search(
        r"^scicat +waiting for SciCat since .* UTC \(\dm \d\ds, \d+ files waiting\)", status.stdout, re.M
    ), status.stdout
    health = cli("offline-ingestor", "health", config=config)
    assert health.returncode == 1
    assert re.search(r"^FAIL scicat .*waiting for SciCat since", health.stdout, re.M), health.stdout


def run_outage(
    standin: Any,
    config: Path,
    start_worker: Any,
    data_root: Path,
    toggles: tuple[Callable[[], None], Callable[[], None]],
    pattern: list[tuple[float, float]],
) -> tuple[Any, float, Path]:
    """Queue FILES files with SciCat down, run the down/up ``pattern``, bring it back; measure the drain."""
    down, up = toggles
    worker = start_worker(config)
    files = make_files(data_root, FILES)
    down()
    enqueue_all(config, files)
    for number, (down_s, up_s) in enumerate(pattern):
        time.sleep(down_s)
        # Nothing may fail while SciCat is away, however long it stays away.
        failed = failures(config)
        assert not failed, f"{len(failed)} files failed during the outage, e.g. {next(iter(failed.values()))}"
        if number == 0:
            operator_sees_the_outage(config)
        up()
        time.sleep(up_s)
        if up_s:
            down()
    if pattern[-1][1]:
        up()
    back = time.monotonic()
    try:
        wait_for(lambda: settled(config, FILES), timeout=180, what="every file done", every=0.2)
    except AssertionError:
        raise AssertionError(f"not settled: {unsettled(config)}; failed: {failures(config)}") from None
    drain_s = time.monotonic() - back
    result = tally(standin, files)
    assert failures(config) == {}
    assert (result.lost, result.duplicated, result.datasets, result.blocks) == (0, 0, FILES, FILES)
    return result, drain_s, worker.log


@pytest.mark.parametrize("kind", [refused, answering_503], ids=["refused", "503"])
def test_outage_longer_than_the_retry_budget(
    kind: Any, standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """SciCat away for several retry budgets: 0 failed, every dataset and block once, no command."""
    config = fast_config()
    result, drain_s, log = run_outage(
        standin, config, start_worker, data_root, kind(standin), [(OUTAGE_S, 0)]
    )
    text = log.read_text()
    # Operators see the outage once: one "down" and one "back" line, whatever the number of files.
    assert text.count("scicat.down") == 1 and text.count("scicat.up") == 1, text[-3000:]
    figures(result, outage_s=OUTAGE_S, drain_s=round(drain_s, 1))


def test_flapping_scicat(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """SciCat up briefly and down longer, four times: still 0 failed, nothing lost or doubled."""
    config = fast_config()
    pattern = [(6.0, 0.4)] * 4 + [(6.0, 0)]
    result, drain_s, _ = run_outage(standin, config, start_worker, data_root, refused(standin), pattern)
    figures(result, outage_s=sum(down for down, _ in pattern), drain_s=round(drain_s, 1))

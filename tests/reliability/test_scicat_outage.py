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
from offline_ingestor.queue.scicat_breaker import DOWN_SINCE
from offline_ingestor.testing import Fault
from reliability.runs import enqueue_all, failures, make_files, redis_of, tally, wait_settled

pytestmark = [pytest.mark.redis, pytest.mark.worker]

FILES = 40
#: Several times the test config's whole retry budget.
OUTAGE_S = 15.0
#: The long case (``scripts/reliability.py`` runs the slow ones): files, outage seconds.
LONG = (200, 60.0)


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
    count: int = FILES,
) -> tuple[Any, tuple[float, float], Path]:
    """Queue ``count`` files with SciCat down, run the down/up ``pattern``, bring it back; time the drain."""
    down, up = toggles
    worker = start_worker(config)
    files = make_files(data_root, count)
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
    # Figures only: how long the workers took to notice (the breaker's probe interval)
    redis = redis_of(config)
    wait_for(lambda: not redis.exists(DOWN_SINCE), timeout=120, what="the breaker to close", every=0.1)
    detect_s = time.monotonic() - back
    wait_settled(config, count, timeout=600, what="every file done", every=0.2)
    drain_s = time.monotonic() - back
    result = tally(standin, files)
    assert failures(config) == {}
    assert (result.lost, result.duplicated, result.datasets, result.blocks) == (0, 0, count, count)
    return result, (detect_s, drain_s), worker.log


@pytest.mark.parametrize(
    ("kind", "count", "outage_s"),
    [
        pytest.param(refused, FILES, OUTAGE_S, id="refused"),
        pytest.param(answering_503, FILES, OUTAGE_S, id="503"),
        pytest.param(refused, *LONG, id="refused-200-files", marks=pytest.mark.slow),
    ],
)
def test_outage_longer_than_the_retry_budget(
    kind: Any,
    count: int,
    outage_s: float,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    figures: Any,
) -> None:
    """SciCat away for several retry budgets: 0 failed, every dataset and block once, no command."""
    config = fast_config()
    toggles = kind(standin)
    result, drain_s, log = run_outage(
        standin, config, start_worker, data_root, toggles, [(outage_s, 0)], count
    )
    text = log.read_text()
    # Operators see the outage once: one "down" and one "back" line, whatever the number of files.
    assert text.count("scicat.down") == 1 and text.count("scicat.up") == 1, text[-3000:]
    figures(result, outage_s=outage_s, detect_s=round(drain_s[0], 1), drain_s=round(drain_s[1], 1))


def test_flapping_scicat(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """SciCat up briefly and down longer, four times: still 0 failed, nothing lost or doubled."""
    config = fast_config()
    pattern = [(6.0, 0.4)] * 4 + [(6.0, 0)]
    result, drain_s, _ = run_outage(standin, config, start_worker, data_root, refused(standin), pattern)
    figures(result, outage_s=sum(down for down, _ in pattern), drain_s=round(drain_s[1], 1))

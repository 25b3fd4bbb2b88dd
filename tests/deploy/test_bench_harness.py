"""The bench's floor harness runs (it once waited 600 s for a worker that had exited at start-up).

Figures are never asserted here (bench/RESULTS.md holds them, measured side by side); only that
the harness measures something.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_the_noop_chain_floor_runs_its_chains() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.noop_chain", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1])["chains"] == 5

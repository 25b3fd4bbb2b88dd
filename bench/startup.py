"""Start-up cost of the CLI against a bare interpreter, and the slowest imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from .common import BIN, PYTHON, ROOT, median, percentile
from .services import ingest_env

HEAVY = (
    "celery",
    "kombu",
    "h5py",
    "numpy",
    "requests",
    "pydantic",
    "redis",
    "prometheus_client",
    "structlog",
)


def time_command(argv: Sequence[str], repeat: int) -> dict[str, float]:
    """Median and p95 wall time (ms) of running ``argv`` ``repeat`` times (after one warm-up)."""
    env = ingest_env()
    subprocess.run(argv, capture_output=True, env=env, check=True, cwd=ROOT)
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=True, cwd=ROOT)
        timings.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(median(timings), 1), "p95_ms": round(percentile(timings, 0.95), 1)}


def hyperfine_available() -> bool:
    return shutil.which("hyperfine") is not None


def import_offenders(argv_tail: Sequence[str], top: int = 12) -> list[dict[str, Any]]:
    """Packages by cumulative import time under ``python -X importtime`` (first import of each)."""
    out = subprocess.run(
        [str(PYTHON), "-X", "importtime", *argv_tail],
        capture_output=True,
        text=True,
        env=ingest_env(),
        cwd=ROOT,
        check=False,
    )
    packages: dict[str, float] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)", line)
        if match and "." not in match.group(2) and not match.group(2).startswith("_"):
            packages.setdefault(match.group(2), round(int(match.group(1)) / 1000, 1))
    ranked = sorted(packages.items(), key=lambda item: -item[1])[:top]
    return [{"package": name, "cumulative_ms": ms} for name, ms in ranked]


def loaded_heavy(code: str) -> list[str]:
    """Which heavy packages end up in ``sys.modules`` after running ``code``."""
    probe = f"{code}\nimport sys; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([str(PYTHON), "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return [name for name in out.stdout.strip().split(",") if name]


def cli(*args: str) -> list[str]:
    return [str(BIN / "offline-ingestor"), *args]

"""Shared helpers: paths, statistics, timing and the result table every section fills."""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
BIN = PYTHON.parent


def median(values: Sequence[float]) -> float:
    """Median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1), NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """Median and p95 of values in milliseconds, rounded for the report."""
    return {
        "n": len(values),
        "median_ms": round(median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
    }


def time_calls(call: Callable[[], Any], repeat: int) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``call``."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


@dataclass
class Row:
    """One target of issue 5: what was measured, against what, and whether it is met."""

    section: str
    target: str
    figure: str
    ratio: str
    met: bool | None  # None = informational, no target
    command: str
    notes: str = ""


@dataclass
class Report:
    """All rows plus the raw figures of every section, written to ``bench/out``."""

    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        mark = {True: "MET", False: "NOT MET", None: "info"}[row.met]
        print(f"  [{mark}] {row.target}: {row.figure} ({row.ratio})", flush=True)

    def markdown(self) -> str:
        lines = [
            "| section | target | measured | ratio | met |",
            "|---|---|---|---|---|",
        ]
        for row in self.rows:
            mark = {True: "yes", False: "**no**", None: "—"}[row.met]
            lines.append(f"| {row.section} | {row.target} | {row.figure} | {row.ratio} | {mark} |")
        return "\n".join(lines) + "\n"

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        data = {"rows": [asdict(row) for row in self.rows], "raw": self.raw}
        (directory / "results.json").write_text(json.dumps(data, indent=2, default=str))
        (directory / "summary.md").write_text(self.markdown())


def fmt_ratio(numerator: float, denominator: float, unit: str = "x") -> str:
    """``12.3x`` style ratio, safe against a zero denominator."""
    if not denominator or math.isnan(denominator):
        return "n/a"
    return f"{numerator / denominator:.2f}{unit}"


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _proc_stat_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    idle = fields[3] + fields[4]
    import os

    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class HostLoad:
    """The host's load around a measurement: what other processes used while it ran.

    ``finish(own_cpu_s)``: ``own_cpu_s`` is the CPU the measurement's own processes used
    (calls, stand-ins, the harness); the rest of the host's busy time is the others'.
    """

    def __init__(self) -> None:
        self.load_start = Path("/proc/loadavg").read_text().split()[:3]
        self.busy0, self.total0 = _proc_stat_busy()
        self.wall0 = time.monotonic()

    def finish(self, own_cpu_s: float) -> dict[str, Any]:
        busy, _ = _proc_stat_busy()
        wall = time.monotonic() - self.wall0
        others = max(0.0, busy - self.busy0 - own_cpu_s)
        import os

        return {
            "cores": os.cpu_count(),
            "loadavg_start": " ".join(self.load_start),
            "loadavg_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "wall_s": round(wall, 1),
            "host_busy_cores": round((busy - self.busy0) / wall, 2) if wall else math.nan,
            "others_cores": round(others / wall, 2) if wall else math.nan,
        }


def children_cpu_s() -> float:
    """user + sys CPU seconds of this process's reaped children (the calls a harness waited for)."""
    import os

    usage = os.times()
    return usage.children_user + usage.children_system


def spread(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    """min / median / max of repeated runs."""
    if not values:
        return {"n": 0, "min": math.nan, "median": math.nan, "max": math.nan}
    return {
        "n": len(values),
        "min": round(min(values), digits),
        "median": round(median(values), digits),
        "max": round(max(values), digits),
    }

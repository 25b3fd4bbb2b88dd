"""Read the worker's JSON log lines: per-step durations and per-file latency."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_ingestor.ingest.steps import STEPS

from .common import summary_ms


def events(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every JSON event in the given log files (Celery's banner and other lines skipped)."""
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def _seconds(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@dataclass
class StepLog:
    """``step.done`` events grouped per job, plus counts of finished and failed files."""

    done: dict[str, dict[str, tuple[float, float]]] = field(default_factory=lambda: defaultdict(dict))
    finished: int = 0
    failed: int = 0
    retries: int = 0

    @classmethod
    def read(cls, paths: Iterable[Path]) -> StepLog:
        log = cls()
        for event in events(paths):
            name = event.get("event")
            if name == "step.done":
                end = _seconds(event["timestamp"])
                log.done[event["key"]][event["step"]] = (end - event["duration_ms"] / 1000, end)
            elif name == "ingest.finished":
                log.finished += 1
            elif name == "ingest.failed":
                log.failed += 1
            elif name == "step.retry":
                log.retries += 1
        return log

    def complete_jobs(self) -> list[dict[str, tuple[float, float]]]:
        return [steps for steps in self.done.values() if len(steps) == len(STEPS)]

    def window(self) -> tuple[float, float]:
        """First step start to last step end over all complete jobs (epoch seconds)."""
        jobs = self.complete_jobs()
        return (
            min(job[STEPS[0]][0] for job in jobs),
            max(job[STEPS[-1]][1] for job in jobs),
        )

    def throughput(self) -> float:
        """Files per second over the window (sustained: the queue never ran dry)."""
        start, end = self.window()
        return len(self.complete_jobs()) / (end - start)

    def step_durations(self) -> dict[str, dict[str, float]]:
        """Median and p95 of each step's own duration (inside the task)."""
        per_step: dict[str, list[float]] = defaultdict(list)
        for job in self.done.values():
            for step, (start, end) in job.items():
                per_step[step].append((end - start) * 1000)
        return {step: summary_ms(per_step[step]) for step in STEPS if step in per_step}

    def latencies_ms(self) -> list[float]:
        """Per file: start of its first step to end of its last step."""
        return [(job[STEPS[-1]][1] - job[STEPS[0]][0]) * 1000 for job in self.complete_jobs()]

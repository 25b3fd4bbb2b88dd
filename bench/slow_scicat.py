"""Throughput against a slow SciCat (issue 14): ``python -m bench.slow_scicat [--files N]``.

The stand-in answers every request after ``latency`` ± half of it (40 ms ± 20 ms is a real
backend's range), one worker host: prefork c=2 on one queue (the default deployment)
against the same plus ``worker --io`` (a thread pool) serving the two SciCat write steps.
Also requests per file per kind, counted at the stand-in. Prints JSON; the table is in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from .common import spread
from .corpus import small_files
from .worker_runs import run_queue


def kinds(requests: list[list[Any]]) -> dict[str, int]:
    counted: Counter[str] = Counter()
    for _, method, path, _status in requests:
        route = path.removeprefix("/api/v3/").split("/")
        counted[f"{method} {route[0]}{'/../' + route[-1] if len(route) > 2 else ''}"] += 1
    return dict(counted)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_scicat")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--tag", default="", help="name prefix of this run (e.g. the code version)")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[40.0])
    parser.add_argument("--io-concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every setting (min/median/max)")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "offline-ingestor-bench"
    data_root = work / "data"
    files = small_files(data_root, args.files, "slow")
    rows = []
    settings = [(latency, io) for latency in args.latency_ms for io in sorted({0, *args.io_concurrency})]
    for index in range(args.repeat):
        for latency, io in settings[index % len(settings) :] + settings[: index % len(settings)]:
            name = f"{args.tag}slow-{latency:g}ms-io{io}" + (f"-r{index}" if args.repeat > 1 else "")
            run = run_queue(
                work, data_root, files, name=name, concurrency=2, latency_ms=latency,
                jitter_ms=latency / 2, io_concurrency=io,
            )  # fmt: skip
            stats = json.loads((work / name / "standin.json").read_text())
            per_kind = {
                kind: round(count / len(files), 2) for kind, count in kinds(stats["requests"]).items()
            }
            row = {
                "latency_ms": latency,
                "io_threads": io,
                "files_per_s": run.files_per_s,
                "finished": run.finished,
                "failed": run.failed,
                "requests_per_file": round(run.scicat_requests / len(files), 2),
                "per_kind": per_kind,
                "cpu_ms_per_file": run.cpu_ms_per_file,
                "host": run.extra["host"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = [
        {
            "latency_ms": latency,
            "io_threads": io,
            "files_per_s": spread([row["files_per_s"] for row in mine]),
            "requests_per_file": spread([row["requests_per_file"] for row in mine], 2),
            "others_cores": spread([row["host"]["others_cores"] for row in mine], 2),
        }
        for latency, io in settings
        if (mine := [row for row in rows if (row["latency_ms"], row["io_threads"]) == (latency, io)])
    ]
    for item in summary:
        print(json.dumps({"summary": item}), flush=True)
    (work / "slow_scicat.json").write_text(
        json.dumps({"rows": rows, "summary": summary, "runs": dataclasses.asdict(run)})
    )


if __name__ == "__main__":
    main()

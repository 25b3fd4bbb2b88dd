"""Does a big file's hashing hold back the small files queued behind it? (issue 26, target 2)

``python -m bench.big_behind [--size-gib 6] [--small 100] [--rounds 2] [--tag T]``: one
``offline-ingestor worker`` (prefork c=2, blake2b, instant stand-in, fresh Redis each run,
``worker_runs.run_queue``) ingests 100 small YMIR files alone, and the same 100 queued behind
one big file (a small YMIR file extended to ``--size-gib`` with a sparse tail: the page-cache
case, hashing is pure CPU), modes alternating per round. Per run: seconds from the first step
start to the end of the last small file, and to the big file's end; the ratio behind ÷ alone
pairwise per round; host load and others' CPU (``common.HostLoad``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from offline_ingestor.ingest.steps import STEPS
from offline_ingestor.testing.nexus_factory import write_ess_file

from .common import HostLoad, spread
from .corpus import PROPOSAL, small_files, ymir_dir
from .logparse import _seconds, events
from .worker_runs import run_queue


def big_file(data_root: Path, size_gib: float, index: int = 0) -> Path:
    """A valid small YMIR file whose size is ``size_gib`` (sparse tail after HDF5's end)."""
    path = ymir_dir(data_root) / (f"big-{size_gib:g}gib" + (f"-{index}" if index else "") + ".hdf")
    size = int(size_gib * 2**30)
    if not path.exists() or path.stat().st_size != size:
        write_ess_file(
            path, proposal=PROPOSAL, instrument="YMIR", run_number=999999, job_id="big-" + str(size)
        )
        os.truncate(path, size)
    return path


def one_run(
    work: Path, data_root: Path, files: list[Path], big: list[Path] | None, name: str, route_bytes: int | None
) -> dict[str, Any]:
    """``route_bytes`` None: one queue; else ``worker --io`` (4 threads) beside the prefork worker,
    with ``queue.io_hash_min_bytes`` = ``route_bytes`` (0: only the write steps go there)."""
    load = HostLoad()
    io, queue = (0, None) if route_bytes is None else (4, {"io_hash_min_bytes": route_bytes})
    run = run_queue(
        work,
        data_root,
        (big or []) + files,
        name=name,
        concurrency=2,
        io_concurrency=io,
        queue=queue,
    )
    own = sum(run.cpu_ms_per_file.values()) * run.finished / 1000
    starts, ends = [], {}
    for event in events((work / name).glob("worker-*.log")):
        if event.get("event") != "step.done":
            continue
        end = _seconds(event["timestamp"])
        if event["step"] == STEPS[0]:
            starts.append(end - event["duration_ms"] / 1000)
        if event["step"] == STEPS[-1]:
            ends[event["file"]] = end
    first = min(starts)
    small_ends = [ends[str(path)] for path in files if str(path) in ends]
    return {
        "run": name,
        "big": big is not None,
        "route_bytes": route_bytes,
        "finished": run.finished,
        "failed": run.failed,
        "last_small_s": round(max(small_ends) - first, 2),
        "big_s": round(max(ends[str(path)] for path in big) - first, 2)
        if big and all(str(path) in ends for path in big)
        else None,
        "build_dataset_ms": run.steps.get("build-dataset"),
        "worker_cpu_ms_per_file": run.cpu_ms_per_file,
        "host": load.finish(own),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.big_behind", description=__doc__)
    parser.add_argument("--size-gib", type=float, default=6.0)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--big", type=int, default=1, help="big files ahead of the small ones")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tag", default="")
    parser.add_argument(
        "--route", action="store_true",
        help="worker --io beside: alone, behind the big file unrouted, and routed (io_hash_min_bytes 1 GiB)",
    )  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "offline-ingestor-bench"
    data_root = work / "data"
    files = small_files(data_root, args.small, "behind")
    big = [big_file(data_root, args.size_gib, index) for index in range(args.big)]
    rows: list[dict[str, Any]] = []
    route = 1 << 30
    modes: list[tuple[str, list[Path] | None, int | None]] = [("alone", None, None), ("big", big, None)]
    if args.route:
        modes = [("alone", None, route), ("big-unrouted", big, 0), ("big-routed", big, route)]
    for index in range(args.rounds):
        for label, mode, bound in modes[index % len(modes) :] + modes[: index % len(modes)]:
            row = one_run(work, data_root, files, mode, f"{args.tag}big-behind-{label}-{index}", bound)
            rows.append({"mode": label, **row})
            print(json.dumps(rows[-1]), flush=True)
    alone = [row for row in rows if row["mode"] == "alone"]
    summary: dict[str, Any] = {
        "alone_last_small_s": spread([row["last_small_s"] for row in alone], 2),
        "others_cores": spread([row["host"]["others_cores"] for row in rows], 2),
    }
    for label, _, _ in modes[1:]:
        behind = [row for row in rows if row["mode"] == label]
        summary[label] = {
            "last_small_s": spread([row["last_small_s"] for row in behind], 2),
            "big_s": spread([row["big_s"] for row in behind if row["big_s"] is not None], 2),
            "over_alone": spread(
                [b["last_small_s"] / a["last_small_s"] for a, b in zip(alone, behind, strict=True)], 2
            ),
        }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()

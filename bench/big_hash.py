"""Big files at the storage's read rate (issue 26.2): ``python -m bench.big_hash``.

A sparse file of ``--size-gib`` GiB (holes read as zeros from the kernel without any disk
I/O, so this is the page-cache case: it measures CPU, not a disk) hashed by our file-list
step (``filelist.build_file_list``, what build-dataset runs) with blake2b (the default,
upstream's) and blake3 (multi-threaded), interleaved, each in its own subprocess; beside them
the bare read rate of the same loop without a hash (``os.preadv`` into the same 1 MiB
buffer). Per run: GB/s, CPU seconds (all threads), peak RSS (VmHWM). Ratios pair by pair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .common import PYTHON, ROOT, HostLoad, spread
from .hashing import _OURS, _PEAK

_READ = (
    """
import json, os, sys, time
PEAK
fd = os.open(sys.argv[1], os.O_RDONLY)
buffer = bytearray(1 << 20)
offset, started = 0, time.perf_counter()
while count := os.preadv(fd, [buffer], offset):
    offset += count
print(json.dumps({"seconds": time.perf_counter() - started, "chk": "", "maxrss_kb": peak_kb()}))
"""
).replace("PEAK\n", _PEAK)


def run(script: str, path: Path, algorithm: str) -> dict[str, Any]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [str(PYTHON), "-c", script, str(path), algorithm],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(done.stdout)
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["gb_per_s"] = path.stat().st_size / result["seconds"] / 1e9
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.big_hash")
    parser.add_argument("--size-gib", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/offline-ingestor-bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"sparse-{args.size_gib:g}GiB.bin"
    with path.open("wb") as handle:
        handle.truncate(int(args.size_gib * (1 << 30)))
    contenders = {"read only": (_READ, ""), "blake2b": (_OURS, "blake2b"), "blake3": (_OURS, "blake3")}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    load = HostLoad()
    for _ in range(args.runs):
        for name, (script, algorithm) in contenders.items():
            results[name].append(run(script, path, algorithm))
    own = sum(r["cpu_s"] for runs in results.values() for r in runs)
    host = load.finish(own)
    path.unlink()
    summary: dict[str, Any] = {"host": host, "size_gib": args.size_gib, "sparse": True}
    for name, runs in results.items():
        summary[name] = {
            "gb_per_s": spread([r["gb_per_s"] for r in runs], 2),
            "cpu_s": spread([r["cpu_s"] for r in runs], 1),
            "peak_rss_mb": round(max(r["maxrss_kb"] for r in runs) / 1024, 1),
            "chk": runs[0]["chk"][:16],
        }
    summary["blake3_vs_blake2b"] = spread(
        [
            b3["gb_per_s"] / b2["gb_per_s"]
            for b2, b3 in zip(results["blake2b"], results["blake3"], strict=True)
        ],
        2,
    )
    summary["blake3_vs_read"] = spread(
        [
            b3["gb_per_s"] / rd["gb_per_s"]
            for rd, b3 in zip(results["read only"], results["blake3"], strict=True)
        ],
        2,
    )
    print(json.dumps(summary, indent=1))
    (args.workdir / "big_hash.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    os.sync()


if __name__ == "__main__":
    main()

"""Checksums: our file-list step against a hashlib tight loop, peak RSS, hash-once-per-file.

The big file is written once into /tmp from a repeated random block (real bytes, not sparse)
and read from the page cache by every contender, so the comparison is CPU against CPU.
Each contender runs in its own subprocess so that ``ru_maxrss`` is its own peak.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .common import PYTHON, ROOT, median

BLOCK = 64 << 20
ALGORITHMS = ("blake2b", "sha256")

#: VmHWM, not ru_maxrss: Linux carries the pre-exec (forked parent's) peak into ru_maxrss.
_PEAK = """
def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

_OURS = """
import json, sys, time
PEAK
from pathlib import Path
from offline_ingestor.config import FileHandlingOptions
from offline_ingestor.files.filelist import build_file_list
options = FileHandlingOptions(file_hash_algorithm=sys.argv[2], save_file_hash=False)
started = time.perf_counter()
entries = build_file_list(Path(sys.argv[1]), options, source_folder="")
print(json.dumps({"seconds": time.perf_counter() - started, "chk": entries[0]["chk"],
                  "maxrss_kb": peak_kb()}))
"""

_HASHLIB = """
import hashlib, json, sys, time
PEAK
started = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    digest = hashlib.file_digest(handle, sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - started, "chk": digest.hexdigest(),
                  "maxrss_kb": peak_kb()}))
"""


_OURS = _OURS.replace("PEAK\n", _PEAK)
_HASHLIB = _HASHLIB.replace("PEAK\n", _PEAK)


def big_file(directory: Path, size_bytes: int) -> Path:
    """A file of ``size_bytes`` real (non-sparse) bytes, reused when it already has that size."""
    path = directory / f"bench-hash-{size_bytes >> 20}MiB.bin"
    if path.exists() and path.stat().st_size == size_bytes:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(BLOCK)
    with path.open("wb") as handle:
        for offset in range(0, size_bytes, BLOCK):
            handle.write(block[: min(BLOCK, size_bytes - offset)])
    return path


def choose_size(directory: Path, wanted: int) -> tuple[int, str]:
    """4 GB if at least 10 GB are free there, else 1 GB (with the reason)."""
    free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
    if free >= 10 * 10**9:
        return wanted, f"{free / 1e9:.0f} GB free in {directory}"
    return min(wanted, 1 << 30), f"only {free / 1e9:.1f} GB free in {directory}: using 1 GiB"


def _run(script: str, path: Path, algorithm: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(PYTHON), "-c", script, str(path), algorithm],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(out.stdout))


def compare(path: Path, repeat: int) -> dict[str, dict[str, Any]]:
    """Per algorithm: median seconds and GB/s of both paths, our peak RSS, same digest."""
    size = path.stat().st_size
    _run(_HASHLIB, path, "sha256")  # warm the page cache once
    results: dict[str, dict[str, Any]] = {}
    for algorithm in ALGORITHMS:
        ours, theirs = [], []
        for _ in range(repeat):  # interleaved, so drift hits both alike
            theirs.append(_run(_HASHLIB, path, algorithm))
            ours.append(_run(_OURS, path, algorithm))
        if {run["chk"] for run in ours} != {run["chk"] for run in theirs}:
            raise AssertionError(f"{algorithm}: digests differ")
        ours_s, theirs_s = median([r["seconds"] for r in ours]), median([r["seconds"] for r in theirs])
        results[algorithm] = {
            "ours_gb_s": round(size / ours_s / 1e9, 3),
            "hashlib_gb_s": round(size / theirs_s / 1e9, 3),
            "ratio": round(theirs_s / ours_s, 3),
            "ours_peak_rss_mb": round(max(r["maxrss_kb"] for r in ours) / 1024, 1),
            "hashlib_peak_rss_mb": round(max(r["maxrss_kb"] for r in theirs) / 1024, 1),
        }
    return results


def hashed_once(path: Path) -> dict[str, int]:
    """Bytes actually hashed by build-dataset run twice on one job (a retry), in one process.

    The checksum cache is keyed by (path, size, mtime_ns, algorithm): the second run must
    read nothing. Counted through the step's progress callback, which only hashing calls.
    """
    from offline_ingestor.config import FileHandlingOptions
    from offline_ingestor.files.checksums import clear_cache
    from offline_ingestor.files.filelist import build_file_list

    options = FileHandlingOptions(save_file_hash=False)

    def bytes_hashed() -> int:
        total = [0]
        build_file_list(
            path, options, source_folder="", progress=lambda n: total.__setitem__(0, total[0] + n)
        )
        return total[0]

    clear_cache()
    first, retry = bytes_hashed(), bytes_hashed()
    os.utime(path)  # a rewritten file (new mtime) must be hashed again
    after_touch = bytes_hashed()
    clear_cache()
    return {"file_bytes": path.stat().st_size, "first_run": first, "retry": retry, "after_touch": after_touch}

"""``python -m bench.audit [--files N]``: SciCat requests and files/s of ``offline-ingestor audit``.

A tree of N small YMIR files (``corpus.small_files``), every file but 1 % catalogued in the
SciCat stand-in exactly as ingestion would catalogue it (the payloads come from the step
functions; the POSTs go straight to the stand-in, two per file, to keep seeding short), then
one ``offline-ingestor audit --json --no-redis`` subprocess. Requests are counted at the
stand-in (which runs in this process, on the same 2 cores as the audit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from offline_ingestor.audit.identity import audit_runtime
from offline_ingestor.config import load_config
from offline_ingestor.ingest.job import new_job
from offline_ingestor.ingest.steps import build_dataset, extract, select_schema
from offline_ingestor.testing import ScicatStandin, scenario

from .common import HostLoad, children_cpu_s, spread
from .corpus import small_files
from .services import write_config

BIN = Path(sys.executable).parent


def seed(config_path: Path, paths: list[Path], skip_every: int) -> int:
    """POST dataset + block for each file (payloads from the steps); returns files left out."""
    os.environ["OFFLINE_INGESTOR_SCICAT_PASSWORD"] = "ingestorpw"
    rt = audit_runtime(load_config(config_path), checksums=False)  # dry run, look-ups cached
    config = rt.config
    left_out = 0
    for index, path in enumerate(paths):
        if skip_every and index % skip_every == 0:
            left_out += 1
            continue
        job = build_dataset(
            rt, extract(rt, select_schema(rt, new_job(path, config.ingestion.allowed_data_roots)))
        )
        _, body = rt.scicat.create_dataset(job["dataset"])
        rt.scicat.create_origdatablock({"datasetId": body["pid"], **job["origdatablock"]})
    return left_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1, help="audits of each kind (min/median/max)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/offline-ingestor-bench/audit"))
    args = parser.parse_args()
    data_root = args.workdir / "data"
    started = time.monotonic()
    paths = small_files(data_root, args.files, prefix="audit")
    print(f"tree: {len(paths)} files ({time.monotonic() - started:.0f} s)", flush=True)
    with scenario.seed(ScicatStandin(admin_groups=["admin", "ingestor"])) as standin:
        config = write_config(
            args.workdir / "audit.yml",
            scicat_url=standin.url_v3,
            broker_url="redis://127.0.0.1:1/0",
            data_root=data_root,
            heartbeat=args.workdir / "hb",
            # the audit compares stats (checksums only with --checksums); seeding skips hashing
            ingestion={
                "file_handling": {"compute_file_hash": False, "ingestor_files_directory": "../ingestor"}
            },
        )
        started = time.monotonic()
        left_out = seed(config, paths, skip_every=100)
        print(f"seeded {len(paths) - left_out} datasets ({time.monotonic() - started:.0f} s)", flush=True)
        fulls, agains = [], []
        previous = args.workdir / "first-audit.jsonl"
        for _ in range(args.repeat):
            first = _timed_audit(standin, config, [])
            previous.write_text(first.pop("stdout"))
            again = _timed_audit(standin, config, ["--previous", str(previous)])
            again.pop("stdout")
            fulls.append(first)
            agains.append(again)
    print(json.dumps({"files": len(paths), "full audit": fulls[-1], "with --previous": agains[-1]}, indent=2))
    print(
        json.dumps(
            {
                "files_per_s": {
                    "full": spread([run["files_per_s"] for run in fulls]),
                    "previous": spread([run["files_per_s"] for run in agains]),
                },
                "others_cores": spread([run["host"]["others_cores"] for run in fulls + agains], 2),
            }
        )
    )


def _timed_audit(standin: ScicatStandin, config: Path, extra: list[str]) -> dict[str, Any]:
    """One ``audit --json --no-redis`` subprocess: time, classes, requests seen by the stand-in."""
    before = len(standin.requests)
    env = {**os.environ, "OFFLINE_INGESTOR_SCICAT_PASSWORD": "ingestorpw"}
    started, load, own0 = time.monotonic(), HostLoad(), children_cpu_s() + time.process_time()
    result = subprocess.run(
        [str(BIN / "offline-ingestor"), "audit", "-c", str(config), "--json", "--no-redis", *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.monotonic() - started
    # The audit and the stand-in (a thread of this process) are ours; the rest is the host's.
    host = load.finish(children_cpu_s() + time.process_time() - own0)
    # Largest resident set of any child waited for so far (the audits run one after another).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    calls = standin.requests[before:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    classes = Counter(line["class"] for line in lines if "class" in line)
    files = sum(count for cls, count in classes.items() if cls != "orphan")
    kinds = Counter(
        f"{method} {'origdatablocks' if path.endswith('/origdatablocks') else path.rsplit('/', 1)[-1]}"
        for method, path, _ in calls
    )
    return {
        "exit": result.returncode,
        "classes": dict(classes),
        "seconds": round(seconds, 1),
        "files_per_s": round(files / seconds, 1),
        "peak_rss_mb_so_far": round(peak_mb, 1),
        "scicat_requests": len(calls),
        "requests_per_file": round(len(calls) / max(files, 1), 4),
        "requests_by_kind": dict(kinds),
        "host": host,
        "stdout": result.stdout,
    }


if __name__ == "__main__":
    main()

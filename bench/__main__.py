"""``python -m bench [--quick] [--only SECTION ...]``: every benchmark of issue 5 in one run.

Sections: throughput (1, 2, 6 share the worker harness), hashing (3), large (4), startup (5).
Raw figures go to ``bench/out/results.json``, the table to ``bench/out/summary.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_ingestor.testing import scenario

from . import hashing, large_nexus, startup
from .common import PYTHON, ROOT, HostLoad, Report, Row, children_cpu_s, fmt_ratio, section
from .corpus import small_files
from .profiles import breakdown, top_functions
from .services import StandinProcess, write_config
from .worker_runs import QueueRun, run_process_per_file, run_queue

CMD = "bench/run"


@dataclass(frozen=True)
class Sizes:
    """How much each section does; ``--quick`` shrinks everything."""

    files: int = 2000
    per_process_files: int = 100
    profile_files: int = 300
    scale_files: int = 1000
    events_files: int = 500
    rate_files: int = 30
    rate_limit_per_s: float = 20.0
    hash_bytes: int = 4 * 10**9
    hash_repeat: int = 3
    event_bytes: int = 3 << 30
    extract_repeat: int = 30
    startup_repeat: int = 15


QUICK = Sizes(300, 20, 150, 200, 150, 20, 20.0, 512 << 20, 2, 256 << 20, 15, 5)


def throughput(report: Report, sizes: Sizes, work: Path, data_root: Path, cmd: str) -> None:
    """Targets 1, 2 and 6: one backlog run, the per-process model, a profile, scale-out."""
    section(f"worker throughput and backlog latency ({sizes.files} files)")
    files = small_files(data_root, sizes.files)
    main = run_queue(work, data_root, files, name="backlog", workers=1, concurrency=2)
    report.raw["backlog"] = dataclasses.asdict(main)
    direct = run_process_per_file(
        work, data_root, small_files(data_root, sizes.per_process_files, "direct"), 2
    )
    report.raw["process_per_file"] = direct
    ok = main.finished == len(files) and main.scicat_datasets == len(files) and not main.failed
    note = "" if ok else f"finished {main.finished}, failed {main.failed}, datasets {main.scicat_datasets}"
    report.add(
        Row(
            "1 throughput",
            "worker ≥ 100 files/s sustained (1 worker, prefork c=2)",
            f"{main.files_per_s} files/s over {main.files} files",
            f"{main.files_per_s / 100:.2f} of target",
            main.files_per_s >= 100 and ok,
            cmd,
            note,
        )
    )
    speedup = main.files_per_s / direct["files_per_s"]
    report.add(
        Row(
            "1 throughput",
            "≥ 25x the process-per-file model",
            f"{direct['files_per_s']} files/s per-process ({direct['files']} files, 2 at a time)",
            fmt_ratio(main.files_per_s, direct["files_per_s"]),
            speedup >= 25 and not direct["failures"],
            cmd,
        )
    )
    window = main.extra["window_s"]
    report.add(
        Row(
            "2 backlog",
            "median first→last step < 0.5 s with the backlog queued first",
            f"median {main.latency['median_ms']:.0f} ms, p95 {main.latency['p95_ms']:.0f} ms",
            f"median = {main.latency['median_ms'] / 1000 / window:.4f} of the {window:.0f} s drain",
            main.latency["median_ms"] < 500,
            cmd,
        )
    )

    section("profiled worker (cProfile in every process)")
    profile_dir = work / "profile"
    shutil.rmtree(profile_dir, ignore_errors=True)
    profiled = run_queue(
        work, data_root, files[: sizes.profile_files], name="profiled", profile_dir=profile_dir
    )
    children = sorted(profile_dir.glob("w0/child-*.prof"))
    report.raw["profile"] = {
        "run": dataclasses.asdict(profiled),
        "children": breakdown(children) if children else {},
        "children_top": top_functions(children) if children else [],
        "main": breakdown([profile_dir / "w0/main.prof"]) if (profile_dir / "w0/main.prof").exists() else {},
    }

    section("task events on (Flower/celery-exporter) against off")
    events = run_queue(
        work, data_root, files[: sizes.events_files], name="events-on", queue={"task_events": True}
    )
    report.raw["events_on"] = dataclasses.asdict(events)
    report.add(
        Row(
            "1 throughput",
            "cost of Celery task events (queue.task_events)",
            f"{events.files_per_s} files/s with events vs {main.files_per_s} without",
            fmt_ratio(events.files_per_s, main.files_per_s),
            None,
            cmd,
        )
    )

    section("scale out: 1 vs 2 worker processes (prefork c=1 each) on one Redis")
    subset = files[: sizes.scale_files]
    runs: list[QueueRun] = [
        run_queue(work, data_root, subset, name=f"scale-{count}", workers=count, concurrency=1)
        for count in (1, 2)
    ]
    report.raw["scale_out"] = [dataclasses.asdict(run) for run in runs]
    report.add(
        Row(
            "6 scale-out",
            "throughput grows with a second worker process",
            f"{runs[0].files_per_s} → {runs[1].files_per_s} files/s",
            fmt_ratio(runs[1].files_per_s, runs[0].files_per_s),
            runs[1].files_per_s > runs[0].files_per_s * 1.1,
            cmd,
            "2 cores shared by Redis, the stand-in and the workers",
        )
    )

    section(f"rate limit: scicat.rate_limit_per_s = {sizes.rate_limit_per_s} (one worker process)")
    limited = run_queue(
        work,
        data_root,
        files[: sizes.rate_files],
        name="rate-limited",
        concurrency=1,
        scicat={"rate_limit_per_s": sizes.rate_limit_per_s},
    )
    report.raw["rate_limited"] = dataclasses.asdict(limited)
    report.add(
        Row(
            "6 scale-out",
            f"per-process SciCat rate limit {sizes.rate_limit_per_s:g} req/s holds",
            f"{limited.scicat_requests_per_s} req/s at SciCat (unlimited run: {main.scicat_requests_per_s})",
            fmt_ratio(limited.scicat_requests_per_s, sizes.rate_limit_per_s, " of limit"),
            limited.scicat_requests_per_s <= sizes.rate_limit_per_s * 1.05,
            cmd,
        )
    )


def checksums(report: Report, sizes: Sizes, cmd: str) -> None:
    """Target 3."""
    directory = Path("/tmp/offline-ingestor-bench")
    size, why = hashing.choose_size(directory, sizes.hash_bytes)
    section(f"checksums on a {size / 1e9:.2f} GB file ({why})")
    path = hashing.big_file(directory, size)
    results = hashing.compare(path, sizes.hash_repeat)
    once = hashing.hashed_once(path)
    report.raw["checksums"] = {"file_bytes": size, "disk": why, "algorithms": results, "hashed_once": once}
    for algorithm, result in results.items():
        report.add(
            Row(
                "3 checksums",
                f"{algorithm}: ≥ 90 % of hashlib.file_digest",
                f"{result['ours_gb_s']} vs {result['hashlib_gb_s']} GB/s ({size / 1e9:.2f} GB)",
                f"{result['ratio'] * 100:.1f} %",
                result["ratio"] >= 0.9,
                cmd,
            )
        )
        report.add(
            Row(
                "3 checksums",
                f"{algorithm}: peak RSS of our path < 100 MB",
                f"{result['ours_peak_rss_mb']} MB (hashlib loop: {result['hashlib_peak_rss_mb']} MB)",
                "—",
                result["ours_peak_rss_mb"] < 100,
                cmd,
            )
        )
    report.add(
        Row(
            "3 checksums",
            "hashed once per ingestion (retry reads 0 bytes)",
            f"first {once['first_run']} B, retry {once['retry']} B, after touch {once['after_touch']} B",
            "—",
            once["retry"] == 0 and once["first_run"] == once["file_bytes"],
            cmd,
        )
    )


def large(report: Report, sizes: Sizes, work: Path, data_root: Path, cmd: str) -> None:
    """Target 4."""
    from offline_ingestor.config import load_config
    from offline_ingestor.ingest.runtime import Runtime

    section(f"extraction with a {sizes.event_bytes / 2**30:.2f} GiB event dataset")
    small, big = large_nexus.write_pair(data_root, sizes.event_bytes)
    standin = StandinProcess(work / "large-standin.json").start()
    try:
        config = write_config(
            work / "large.yml",
            scicat_url=standin.url,
            broker_url="redis://127.0.0.1:1/0",
            data_root=data_root,
            heartbeat=work / "unused",
        )
        import os

        os.environ.update(scenario.INGESTOR_ENV)
        result = large_nexus.compare(
            Runtime.from_config(load_config(config)), small, big, sizes.extract_repeat
        )
    finally:
        standin.stop()
    report.raw["large_nexus"] = result
    report.add(
        Row(
            "4 large files",
            "extract within 2x of the same file without event data",
            f"{result['extract_large_ms']} vs {result['extract_small_ms']} ms "
            f"({result['large_file_bytes'] / 2**30:.2f} GiB file)",
            f"{result['ratio']:.2f}x",
            result["ratio"] <= 2,
            cmd,
        )
    )


def startup_section(report: Report, sizes: Sizes, work: Path, data_root: Path, cmd: str) -> None:
    """Target 5."""
    section("start-up")
    standin = StandinProcess(work / "startup-standin.json").start()
    try:
        config = write_config(
            work / "startup.yml",
            scicat_url=standin.url,
            broker_url="redis://127.0.0.1:1/0",
            data_root=data_root,
            heartbeat=work / "unused",
            logging={"format": "json", "logging_level": "WARNING"},
        )
        file = small_files(data_root, 1, "startup")[0]
        bare = startup.time_command([str(PYTHON), "-c", "pass"], sizes.startup_repeat)
        helped = startup.time_command(startup.cli("--help"), sizes.startup_repeat)
        dry = startup.time_command(
            startup.cli("ingest-now", "--dry-run", "-c", str(config), str(file)), sizes.startup_repeat
        )
    finally:
        standin.stop()
    report.raw["startup"] = {
        "python_pass": bare,
        "help": helped,
        "ingest_now_dry_run": dry,
        "hyperfine": startup.hyperfine_available(),
        "help_heavy_modules": startup.loaded_heavy("import offline_ingestor.cli"),
        "ingest_now_heavy_modules": startup.loaded_heavy(
            "import offline_ingestor.cli.ingest, offline_ingestor.ingest.pipeline,"
            " offline_ingestor.ingest.runtime"
        ),
        "importtime_cli": startup.import_offenders(["-c", "import offline_ingestor.cli"]),
        "importtime_ingest_now": startup.import_offenders(
            [
                "-c",
                "import offline_ingestor.cli, offline_ingestor.ingest.pipeline,"
                " offline_ingestor.ingest.runtime, h5py",
            ]
        ),
    }
    report.add(
        Row(
            "5 start-up",
            "`offline-ingestor --help` vs `python -c pass`",
            f"{helped['median_ms']} vs {bare['median_ms']} ms (median of {sizes.startup_repeat})",
            f"+{helped['median_ms'] - bare['median_ms']:.0f} ms",
            None,
            cmd,
        )
    )
    report.add(
        Row(
            "5 start-up",
            "`ingest-now --dry-run` small file vs `python -c pass`",
            f"{dry['median_ms']} vs {bare['median_ms']} ms",
            f"+{dry['median_ms'] - bare['median_ms']:.0f} ms",
            None,
            cmd,
        )
    )


SECTIONS = ("throughput", "checksums", "large", "startup")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a couple of minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/offline-ingestor-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    cmd = (
        "bench/run"
        + (" --quick" if args.quick else "")
        + (f" --only {' '.join(args.only)}" if args.only != list(SECTIONS) else "")
    )
    work, data_root = args.workdir / "work", args.workdir / "data"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report = Report(raw={"sizes": dataclasses.asdict(sizes), "command": cmd})
    started = time.perf_counter()
    steps: dict[str, Any] = {
        "throughput": lambda: throughput(report, sizes, work, data_root, cmd),
        "checksums": lambda: checksums(report, sizes, cmd),
        "large": lambda: large(report, sizes, work, data_root, cmd),
        "startup": lambda: startup_section(report, sizes, work, data_root, cmd),
    }
    for name in args.only:
        # The host's load and the other processes' CPU while the section ran: everything the
        # section starts is a child the harness reaps (workers, Redis, stand-ins, subprocesses).
        load, own0 = HostLoad(), children_cpu_s() + time.process_time()
        steps[name]()
        host = load.finish(children_cpu_s() + time.process_time() - own0)
        report.raw.setdefault("host", {})[name] = host
        print(f"  host during {name}: load {host['loadavg_start']} -> {host['loadavg_end']}, "
              f"others used {host['others_cores']} of {host['cores']} cores", flush=True)  # fmt: skip
        report.save(args.out)
    report.raw["elapsed_s"] = round(time.perf_counter() - started, 1)
    report.save(args.out)
    print(f"\n{report.markdown()}\nraw figures: {args.out / 'results.json'} ({report.raw['elapsed_s']} s)")


if __name__ == "__main__":
    main()

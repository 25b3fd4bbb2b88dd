#!/usr/bin/env python3
"""Run the reliability suite (long cases included) and print/write its table.

Usage:  scripts/reliability.py [--quick] [--load-n N] [--output RELIABILITY.md] [pytest args...]

* default: ``pytest tests/reliability -m "slow or not slow"`` (everything, ~15-25 min on 2 cores)
* ``--quick``: only what CI runs (``-m "not slow"``, a few minutes)
* ``--load-n N``: size of the long load case (default 10,000; ``RELIABILITY_LOAD_N``)

Each test records its figures (files, lost, duplicated, ...) as junit properties; this
script reads the junit XML and writes a markdown table to ``--output`` (RELIABILITY.md),
between its two marker lines: the hand-written sections around them are kept.
Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv/bin/python" if (ROOT / ".venv/bin/python").exists() else Path(sys.executable)
EXTRA_ORDER = (
    "window",
    "kills",
    "seed",
    "promoted_s",
    "restarts",
    "outage_s",
    "detect_s",
    "drain_s",
    "files_per_s",
    "rss_start_mib",
    "rss_end_mib",
    "enqueue_s",
)

#: Liveness chaos: seconds from each fault to its last affected file's terminal state.
TO_TERMINAL = "_to_terminal_s"


def run_suite(quick: bool, load_n: int | None, extra: list[str]) -> tuple[int, Path, list[str], float]:
    xml = Path(tempfile.mkdtemp(prefix="reliability-")) / "junit.xml"
    command = [
        str(PYTHON),
        "-m",
        "pytest",
        "tests/reliability",
        "-m",
        "not slow" if quick else "slow or not slow",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "junit_family=xunit1",
        f"--junitxml={xml}",
        *extra,
    ]
    env = dict(os.environ)
    if load_n:
        env["RELIABILITY_LOAD_N"] = str(load_n)
    started = dt.datetime.now()
    code = subprocess.call(command, cwd=ROOT, env=env)
    return code, xml, command, (dt.datetime.now() - started).total_seconds()


def rows(xml: Path) -> list[dict[str, str]]:
    found = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        if case.find("failure") is not None or case.find("error") is not None:
            result = "FAILED"
        elif (skipped := case.find("skipped")) is not None:
            result = f"skipped ({(skipped.get('message') or '')[:80]})"
        else:
            result = "passed"
        module = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("test_")
        found.append(
            {
                "area": module,
                "case": case.get("name", ""),
                "time": f"{float(case.get('time', 0)):.1f}",
                "result": result,
                **props,
            }
        )
    return found


def table(found: list[dict[str, str]]) -> str:
    lines = [
        "| area | case | files | lost | duplicated | result | time (s) | notes |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for row in found:
        keys = [
            *(key for key in EXTRA_ORDER if key in row),
            *(key for key in row if key.endswith(TO_TERMINAL)),
        ]
        notes = ", ".join(f"{key}={row[key]}" for key in keys)
        lines.append(
            f"| {row['area']} | `{row['case']}` | {row.get('files', '')} | {row.get('lost', '')} | "
            f"{row.get('duplicated', '')} | {row['result']} | {row['time']} | {notes} |"
        )
    return "\n".join(lines)


#: The generated part of the report lies between these lines; the rest is written by hand
#: (tables of other runs, the rules, notes) and is kept as it is.
BEGIN = "<!-- scripts/reliability.py writes from here ... -->"
END = "<!-- ... to here; it keeps everything outside these two lines. -->"


def write_report(path: Path, generated: str) -> None:
    """Put ``generated`` between the markers of ``path``, keeping everything outside them."""
    block = f"{BEGIN}\n{generated}\n{END}"
    old = path.read_text() if path.exists() else ""
    if not old:
        path.write_text(f"# Reliability\n\n{block}\n")
        return
    if BEGIN not in old or END not in old:
        raise SystemExit(f"{path} has no {BEGIN!r} ... {END!r} lines: add them around the generated part")
    head, rest = old.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + block + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help='only the CI cases (-m "not slow")')
    parser.add_argument(
        "--load-n", type=int, default=None, help="files in the long load case (default 10000)"
    )
    parser.add_argument(
        "--output", default=str(ROOT / "RELIABILITY.md"), help="markdown file to write ('-' = none)"
    )
    args, extra = parser.parse_known_args()
    code, xml, command, seconds = run_suite(args.quick, args.load_n, extra)
    found = rows(xml)
    text = table(found)
    total = sum(int(r.get("files") or 0) for r in found)
    lost = sum(int(r.get("lost") or 0) for r in found)
    dup = sum(int(r.get("duplicated") or 0) for r in found)
    failed = sum(r["result"] == "FAILED" for r in found)
    redis = shutil.which("redis-server")
    redis_version = (
        subprocess.run([redis, "--version"], capture_output=True, text=True).stdout.split()[2][2:]
        if redis
        else "?"
    )
    shown = " ".join(shlex.quote(part) for part in ["scripts/reliability.py", *sys.argv[1:]])
    summary = (
        f"{len(found)} cases, {failed} failed; {total} files ingested under faults: "
        f"{lost} lost, {dup} duplicated; {seconds / 60:.1f} min"
    )
    print("\n" + text + "\n\n" + summary)
    if args.output != "-":
        write_report(
            Path(args.output),
            "Produced by the reliability suite (`tests/reliability/`): a real `redis-server` (AOF), real\n"
            "prefork Celery workers started as subprocesses, and the SciCat stand-in with fault injection.\n"
            "Every row is a test; *files* are the files it ingested, *lost* the ones that ended without a\n"
            "dataset + origdatablock, *duplicated* the ones with more than one of either.\n\n"
            f"Command: `{shown}`  (runs `{' '.join(shlex.quote(c) for c in command[2:-1])}`)\n\n"
            f"Run: {dt.datetime.now():%Y-%m-%d %H:%M}, {platform.node() or 'host'}: {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, redis-server {redis_version}.\n\n"
            f"**{summary}**\n\n{text}",
        )
        print(f"wrote {args.output}")
    return code


if __name__ == "__main__":
    sys.exit(main())

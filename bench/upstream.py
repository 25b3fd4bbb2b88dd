"""Upstream's offline ingestor as a real row of the bench (issue 26): ``python -m bench.upstream``.

Upstream (SciCatProject/scicat-ingestor, the archive in ``../shared/reference/sources/``) is
unpacked into a cache folder outside the repository and installed into its own venv on
Python ≥ 3.12 once (``ensure_upstream``); it is run as a peer, never imported or copied.

The side-by-side run: a new small file per call, one process per file, as the ESS online
ingestor spawns them. Three systems, each against its own SciCat stand-in in its own process
(same latency, ``--latency-ms`` ± ``--jitter-ms``), one config file for all (upstream's
``resources/config.sample.yml`` with every key, overlaid with the stand-in's URL, a token of
its ingestor account, the shipped schemas), the same real ESS file (``small-ymir.hdf`` of the
examples, copied with a new ``/entry/entry_identifier_uuid`` per call so each is new):

* ``upstream``: upstream's ``scicat_background_ingestor -c CFG --nexus-file F``;
* ``drop-in``: ours, same command line, queue off (ingests in the process);
* ``ingest-now``: ``offline-ingestor ingest-now -c CFG F``;
* ``floor`` and ``upstream-floor``: ``python -c "import h5py, requests"`` in our venv and in
  upstream's: what any Python process that reads NeXus with h5py and talks to SciCat with
  requests pays before its first line of work (no stand-in; 0 requests), with numpy's
  OpenBLAS held to one thread as our reader child holds it (``files/nexus_child.py``).

Calls run one at a time, round-robin with the order rotated every round, so a load change on
the shared host hits all three alike; ratios are taken pair by pair within a round. Per
call: CPU (user + sys of the call and its children, ``wait4``), wall, and the requests its
stand-in answered during the call. Ours keep their learned-state file
(``scicat/learned.py``) in a folder of the run, empty at the start: the first call of each
pays the questions a new account costs (reported apart as ``first_call``).
"""

from __future__ import annotations

import argparse
import compileall
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from .common import BIN, ROOT, HostLoad, spread
from .corpus import ymir_dir
from .services import StandinProcess, cpu_seconds

ARCHIVE_NAME = "scicat-ingestor-0628398.tar.gz"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "offline-ingestor-bench"
SYSTEMS = ("upstream", "drop-in", "ingest-now", "floor", "upstream-floor")
#: The floor rows talk to no SciCat.
FLOORS = ("floor", "upstream-floor")
_FLOOR_IMPORTS = "import h5py, requests"


def archive() -> Path:
    """Upstream's source archive beside the checkout (``../shared/reference/sources``)."""
    shared = Path(os.environ.get("OFFLINE_INGESTOR_SHARED") or ROOT.parent / "shared")
    path = shared / "reference" / "sources" / ARCHIVE_NAME
    if not path.exists():
        raise SystemExit(f"upstream's source archive not found: {path}")
    return path


def python312() -> str:
    """A Python >= 3.12 for upstream's venv: $UPSTREAM_PYTHON, pyenv's, or python3.1N that runs."""
    if os.environ.get("UPSTREAM_PYTHON"):
        return os.environ["UPSTREAM_PYTHON"]
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.1[2-9]*/bin/python3")))
    candidates += [found for minor in (12, 13, 14) if (found := shutil.which(f"python3.{minor}"))]
    for candidate in candidates:  # a pyenv shim without that version set exits 127
        if subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return candidate
    raise SystemExit("upstream needs Python >= 3.12: set UPSTREAM_PYTHON")


def ensure_upstream(cache: Path = DEFAULT_CACHE) -> Path:
    """Unpack and install upstream once; return its ``scicat_background_ingestor``."""
    source = archive()
    home = cache / source.name.removesuffix(".tar.gz")
    command = home / "venv" / "bin" / "scicat_background_ingestor"
    marker = home / "installed"
    if marker.exists() and command.exists():
        return command
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with tarfile.open(source) as packed:
        packed.extractall(home, filter="data")
    subprocess.run([python312(), "-m", "venv", str(home / "venv")], check=True)
    env = {**os.environ, "SETUPTOOLS_SCM_PRETEND_VERSION_FOR_SCICAT_INGESTOR": "0.0.0"}
    subprocess.run(
        [str(home / "venv/bin/pip"), "install", "-q", str(home / "scicat-ingestor")],
        check=True,
        env=env,
    )
    # byte-compiled as ours are (dropin.py): neither side pays compilation per call
    compileall.compile_dir(str(home / "venv/lib"), quiet=1)
    marker.write_text(source.name)
    return command


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return out


def shared_config(path: Path, upstream_home: Path, url: str, token: str, data_root: Path) -> Path:
    """One config file both read: every key of upstream's sample, values for this stand-in."""
    from offline_ingestor.testing import scenario

    sample = yaml.safe_load((upstream_home / "scicat-ingestor/resources/config.sample.yml").read_text())
    ours = scenario.config_data(url, data_root)
    ours["scicat"].pop("username", None)
    ours["scicat"].update({"token": token, "timeout": 30})
    ours["ingestion"]["file_handling"]["file_path_type"] = "absolute"  # as config/upstream-compatible.yml
    ours["logging"].update({"logging_level": "WARNING", "format": "json"})
    (data_root / "ingestor").mkdir(parents=True, exist_ok=True)  # upstream writes its hash files there
    path.write_text(yaml.safe_dump(_merge(sample, ours)))
    return path


def real_files(data_root: Path, count: int, prefix: str) -> list[Path]:
    """Copies of the real ESS file ``small-ymir.hdf``, each with a new file-writer job id."""
    import h5py

    from offline_ingestor.examples import EXAMPLES_DIR

    directory = ymir_dir(data_root)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"{prefix}-{index:05d}.hdf"
        shutil.copyfile(EXAMPLES_DIR / "small-ymir.hdf", path)
        with h5py.File(path, "r+") as handle:
            del handle["/entry/entry_identifier_uuid"]
            handle["/entry/entry_identifier_uuid"] = str(uuid.uuid4())
        paths.append(path)
    return paths


def measured(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one process to its end (calls run one at a time): exit code, wall, CPU with its
    children (``RUSAGE_CHILDREN`` delta: the call and the NeXus reader it starts), epoch span."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at, started = time.time(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "code": done.returncode,
        "cpu_ms": ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000,
        "wall_ms": wall * 1000,
        "started_at": started_at,
        "ended_at": time.time(),
        "stderr": done.stderr.decode(errors="replace").strip().splitlines()[-1:],
    }


def requests_during(stats: dict[str, Any], started_at: float, ended_at: float) -> list[str]:
    return [
        f"{method} {path}"
        for at, method, path, _ in stats.get("requests", [])
        if started_at <= at <= ended_at
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--jitter-ms", type=float, default=20.0)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where upstream is unpacked")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/offline-ingestor-bench/upstream"))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    upstream = ensure_upstream(args.cache)
    upstream_home = upstream.parents[2]
    import offline_ingestor

    compileall.compile_dir(Path(offline_ingestor.__file__).parent, quiet=1)  # as installed: .pyc
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data_root = work / "data"
    files = {name: real_files(data_root, args.rounds, name) for name in args.systems}
    load = HostLoad()
    standins = {
        name: StandinProcess(
            work / f"{name}-standin.json", args.latency_ms, args.jitter_ms, token_user="ingestor"
        ).start()
        for name in args.systems
        if name not in FLOORS
    }
    configs = {
        name: shared_config(work / f"{name}.yml", upstream_home, standin.url, standin.token, data_root)
        for name, standin in standins.items()
    }
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "learned")}  # ours: a learned-state folder of the run
    commands = {
        "upstream": lambda cfg, f: [str(upstream), "-c", str(cfg), "--nexus-file", str(f)],
        "drop-in": lambda cfg, f: [
            str(BIN / "scicat_background_ingestor"),
            "-c",
            str(cfg),
            "--nexus-file",
            str(f),
        ],
        "ingest-now": lambda cfg, f: [str(BIN / "offline-ingestor"), "ingest-now", "-c", str(cfg), str(f)],
        "floor": lambda cfg, f: [str(BIN / "python"), "-c", _FLOOR_IMPORTS],
        "upstream-floor": lambda cfg, f: [str(upstream.parent / "python"), "-c", _FLOOR_IMPORTS],
    }
    calls: dict[str, list[dict[str, Any]]] = {name: [] for name in args.systems}
    for index in range(args.rounds):
        order = args.systems[index % len(args.systems) :] + args.systems[: index % len(args.systems)]
        for name in order:
            call_env = {**env, "OPENBLAS_NUM_THREADS": "1"} if name in FLOORS else env
            result = measured(commands[name](configs.get(name), files[name][index]), call_env)
            result["round"] = index
            calls[name].append(result)
    standin_cpu = sum(cpu_seconds(s.process.pid) for s in standins.values() if s.process is not None)
    stats: dict[str, dict[str, Any]] = {name: standin.stop() for name, standin in standins.items()}
    stats.update({name: {} for name in FLOORS if name in calls})
    own = sum(c["cpu_ms"] for runs in calls.values() for c in runs) / 1000 + standin_cpu
    import resource

    harness = resource.getrusage(resource.RUSAGE_SELF)
    host = load.finish(own + harness.ru_utime + harness.ru_stime)

    rows: dict[str, Any] = {"host": host, "args": {k: str(v) for k, v in vars(args).items()}, "systems": {}}
    for name, runs in calls.items():
        for run in runs:
            run["requests"] = requests_during(stats[name], run["started_at"], run["ended_at"])
        rest = runs[1:]  # the first call of ours also learns the account (learned-state file)
        rows["systems"][name] = {
            "failures": sum(1 for run in runs if run["code"] != 0),
            "first_error": next((run["stderr"] for run in runs if run["code"] != 0), ""),
            "cpu_ms": spread([run["cpu_ms"] for run in rest], 0),
            "wall_ms": spread([run["wall_ms"] for run in rest], 0),
            "requests": spread([len(run["requests"]) for run in rest], 1),
            "first_call": {
                "cpu_ms": round(runs[0]["cpu_ms"]),
                "requests": runs[0]["requests"],
            },
            "typical_requests": runs[-1]["requests"],
            "datasets": stats[name].get("datasets"),
        }
    if "upstream" in calls:
        base = {run["round"]: run for run in calls["upstream"]}
        for name in calls:
            if name == "upstream":
                continue
            pairs = [(run, base[run["round"]]) for run in calls[name][1:]]
            rows["systems"][name]["vs_upstream"] = {
                "cpu": spread([ours["cpu_ms"] / theirs["cpu_ms"] for ours, theirs in pairs], 2),
                "wall": spread([ours["wall_ms"] / theirs["wall_ms"] for ours, theirs in pairs], 2),
            }
    out = work.parent / f"{args.tag}upstream-results.json"  # beside the work folder: the next run empties it
    out.write_text(json.dumps({"rows": rows, "calls": calls}, indent=1, default=str))
    print(json.dumps(rows, indent=1))
    failed = {name: row["first_error"] for name, row in rows["systems"].items() if row["failures"]}
    if failed:
        print(f"\nFAILED CALLS (figures are not comparable): {failed}")
    print(f"\nhost: {host}")
    print(
        "\n| system | CPU ms min/med/max | wall ms min/med/max | requests "
        "| vs upstream CPU (pairwise) | wall |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows["systems"].items():
        cpu, wall, req = row["cpu_ms"], row["wall_ms"], row["requests"]
        vs = row.get("vs_upstream")
        ratio = f"{vs['cpu']['median']} ({vs['cpu']['min']}..{vs['cpu']['max']})" if vs else "1"
        wall_ratio = f"{vs['wall']['median']} ({vs['wall']['min']}..{vs['wall']['max']})" if vs else "1"
        print(
            f"| {args.tag}{name} | {cpu['min']:.0f} / {cpu['median']:.0f} / {cpu['max']:.0f} | "
            f"{wall['min']:.0f} / {wall['median']:.0f} / {wall['max']:.0f} | {req['median']} "
            f"| {ratio} | {wall_ratio} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

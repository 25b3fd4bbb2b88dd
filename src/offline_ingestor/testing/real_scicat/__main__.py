"""``python -m offline_ingestor.testing.real_scicat build|start|stop|status`` (``scripts/scicat-backend``).

``build`` only builds (once per archive); ``start`` builds the backend if needed, starts it
and its database in the background and prints where it listens and the accounts; ``stop``
stops both by the pids it recorded;
``status`` says whether they answer. The state lives in ``<cache>/run/scicat-backend.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests

from .build import BackendMissing, cache_root, ensure_built
from .server import RealScicat, stop_pid


def _state_file() -> Path:
    return cache_root() / "run" / "scicat-backend.json"


def _running(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(port: int) -> int:
    state = _state_file()
    if state.exists() and _running(json.loads(state.read_text()).get("node_pid")):
        print(f"already running: {json.loads(state.read_text())['url']} (scripts/scicat-backend stop first)")
        return 0
    run_dir = state.parent / "scicat-backend"
    scicat = RealScicat(run_dir, port=port).start()
    state.write_text(json.dumps(scicat.state(), indent=1))
    print(f"SciCat backend: {scicat.url_v3} (database on 127.0.0.1:{scicat.db_port}, logs in {run_dir})")
    print("accounts (password = <username>pw): " + ", ".join(scicat.state()["accounts"]))
    return 0


def stop() -> int:
    state = _state_file()
    if not state.exists():
        print("not running (no state file)")
        return 0
    data = json.loads(state.read_text())
    for key in ("node_pid", "db_pid"):
        if _running(data.get(key)):
            stop_pid(data[key])
    state.unlink()
    print("stopped")
    return 0


def status() -> int:
    state = _state_file()
    if not state.exists():
        print("not running")
        return 3
    data = json.loads(state.read_text())
    try:
        healthy = requests.get(data["url"] + "/health", timeout=3).status_code == 200
    except requests.RequestException:
        healthy = False
    alive = {key: _running(data.get(key)) for key in ("node_pid", "db_pid")}
    word = {True: "up", False: "gone"}
    print(
        f"{data['url']}: {'healthy' if healthy else 'not answering'} "
        f"(backend pid {data['node_pid']} {word[alive['node_pid']]}, "
        f"database pid {data['db_pid']} {word[alive['db_pid']]})"
    )
    return 0 if healthy else 1


def build() -> int:
    started = time.monotonic()
    built = ensure_built()
    print(f"SciCat backend built in {built.root} ({time.monotonic() - started:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scicat-backend", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "start", "stop", "status"])
    parser.add_argument("--port", type=int, default=0, help="backend port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            return build()
        if args.command == "start":
            return start(args.port)
        return stop() if args.command == "stop" else status()
    except BackendMissing as exc:
        print(f"scicat-backend: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Run the stand-in standalone: ``python -m offline_ingestor.testing.scicat_standin``.

Prints the base URL (``http://127.0.0.1:PORT/api``) on stdout with ``--print-url`` and serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import ScicatStandin


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    """Parse options, start the server, block until a termination signal."""
    parser = argparse.ArgumentParser(prog="python -m offline_ingestor.testing.scicat_standin")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--print-url", action="store_true", help="print the base URL on stdout")
    parser.add_argument("--admin-groups", type=_csv, default=["admin", "ingestor"])
    parser.add_argument("--create-dataset-groups", type=_csv, default=["group1"])
    parser.add_argument("--privileged-groups", type=_csv, default=["privgroup"])
    parser.add_argument("--with-pid-groups", type=_csv, default=["owngroup"])
    parser.add_argument("--delete-groups", type=_csv, default=["admin"])
    parser.add_argument("--pid-prefix", default="20.500.12269")
    parser.add_argument("--pid-regex", default=None)
    parser.add_argument("--token-ttl-s", type=float, default=3600.0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added before each answer")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="latency varies by ± this")
    args = parser.parse_args(argv)
    standin = ScicatStandin(
        admin_groups=args.admin_groups,
        create_dataset_groups=args.create_dataset_groups,
        privileged_groups=args.privileged_groups,
        with_pid_groups=args.with_pid_groups,
        delete_groups=args.delete_groups,
        pid_prefix=args.pid_prefix,
        pid_regex=args.pid_regex,
        token_ttl_s=args.token_ttl_s,
        port=args.port,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
    )
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    standin.start()
    if args.print_url:
        print(standin.base_url, flush=True)
    try:
        while not done.wait(0.5):  # a timed wait keeps signal handlers responsive
            pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

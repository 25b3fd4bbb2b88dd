"""The SciCat stand-in in its own process, seeded like the demo, with a stats file at exit.

``python -m bench.standin --stats-file F`` prints its ``/api/v3`` URL on stdout, serves until
SIGTERM, then writes ``{"requests": [[t, method, path, status], ...], "datasets": N,
"origdatablocks": N}`` to ``F``. Running it apart keeps its GIL away from the producer and
the worker, as a real SciCat would be.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from types import FrameType

from offline_ingestor.testing import ScicatStandin
from offline_ingestor.testing.scenario import seed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.standin")
    parser.add_argument("--stats-file", required=True, type=Path)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument(
        "--token-user", default="", help="also print a token of this account (upstream logs in by token only)"
    )
    args = parser.parse_args()
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The stand-in's own latency option: each answer waits latency ± jitter, in its thread.
    standin = seed(
        ScicatStandin(
            admin_groups=["admin", "ingestor"], latency_ms=args.latency_ms, jitter_ms=args.jitter_ms
        )
    )
    standin.start()
    print(standin.url_v3, flush=True)
    if args.token_user:
        print(standin.login_token(args.token_user), flush=True)
    while not done.wait(0.5):
        pass
    standin.stop()
    requests = [list(request) for request in standin.timed_requests()]
    stats = {
        "requests": requests,
        "datasets": len(standin.datasets),
        "origdatablocks": len(standin.origdatablocks),
    }
    args.stats_file.write_text(json.dumps(stats))


if __name__ == "__main__":
    main()

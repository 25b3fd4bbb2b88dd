"""The SciCat stand-in in its own process, seeded like the demo, with a stats file at exit.

``python -m bench.standin --stats-file F`` prints its ``/api/v3`` URL on stdout, serves until
SIGTERM, then writes ``{"requests": [[t, method, path, status], ...], "datasets": N,
"origdatablocks": N}`` to ``F``. Running it apart keeps its GIL away from the producer and
the worker, as a real SciCat would be.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from offline_ingestor.testing import ScicatStandin
from offline_ingestor.testing.scenario import seed
from offline_ingestor.testing.scicat_standin.server import _Handler


def add_latency(mean_s: float, jitter_s: float) -> None:
    """Every answer waits ``mean_s`` ± ``jitter_s`` (uniform), as a real backend's 19-61 ms.

    Each request runs in its own server thread, so waits overlap as at a real server.
    """
    serve = _Handler._serve

    def slow(handler: _Handler) -> None:
        time.sleep(max(0.0, random.uniform(mean_s - jitter_s, mean_s + jitter_s)))
        serve(handler)

    _Handler._serve = slow  # type: ignore[method-assign]


class TimedStandin(ScicatStandin):
    """The stand-in, recording when each request was answered (for rate measurements)."""

    def __init__(self) -> None:
        super().__init__(admin_groups=["admin", "ingestor"])
        self.answered_at: list[float] = []

    def _record(self, method: str, path: str, status: int) -> None:
        with self._log_lock:  # one lock for both lists keeps them aligned
            self._log.append((method, path, status))
            self.answered_at.append(time.time())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.standin")
    parser.add_argument("--stats-file", required=True, type=Path)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    args = parser.parse_args()
    if args.latency_ms:
        add_latency(args.latency_ms / 1000, args.jitter_ms / 1000)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    standin = seed(TimedStandin())
    standin.start()
    print(standin.url_v3, flush=True)
    while not done.wait(0.5):
        pass
    standin.stop()
    requests = [
        [at, method, path, status]
        for at, (method, path, status) in zip(standin.answered_at, standin.requests, strict=True)
    ]
    stats = {
        "requests": requests,
        "datasets": len(standin.datasets),
        "origdatablocks": len(standin.origdatablocks),
    }
    args.stats_file.write_text(json.dumps(stats))


if __name__ == "__main__":
    main()

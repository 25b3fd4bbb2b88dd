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
import time
from pathlib import Path
from types import FrameType

from offline_ingestor.testing import ScicatStandin
from offline_ingestor.testing.scenario import seed


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
    args = parser.parse_args()
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

"""``offline-ingestor worker`` with cProfile in every process: ``python -m bench.profiled_worker DIR ARGS``.

The consumer (main) process is profiled from start to shutdown; each prefork child from
``worker_process_init`` to ``worker_process_shutdown``. Stats land in ``DIR/main.prof`` and
``DIR/child-<pid>.prof`` (read them with :mod:`bench.profiles`).
"""

from __future__ import annotations

import atexit
import cProfile
import os
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    from celery import signals

    main_profile = cProfile.Profile()
    child_profile = cProfile.Profile()

    @signals.worker_process_init.connect(weak=False)
    def _start_child(**_: Any) -> None:
        main_profile.disable()  # inherited through fork: the child keeps only its own
        child_profile.enable()

    @signals.worker_process_shutdown.connect(weak=False)
    def _stop_child(**_: Any) -> None:
        child_profile.disable()
        child_profile.dump_stats(directory / f"child-{os.getpid()}.prof")

    def _stop_main() -> None:
        main_profile.disable()
        if os.getpid() == parent:
            main_profile.dump_stats(directory / "main.prof")

    parent = os.getpid()
    atexit.register(_stop_main)
    sys.argv = ["offline-ingestor", *sys.argv[2:]]
    from offline_ingestor.cli import main as cli_main

    main_profile.enable()
    cli_main()


if __name__ == "__main__":
    main()

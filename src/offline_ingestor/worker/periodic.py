"""A daemon thread of the worker's main process that does one thing every few seconds.

The SciCat prober and the spool flusher share this shape: a tick that must never end the
thread (Redis away for a moment, say), and a stop at shutdown that waits for the tick in
progress so that nothing runs after the worker said it stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Periodic"]


class Periodic:
    """Calls ``tick`` every ``every_s`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(
        self, name: str, every_s: float, tick: Callable[[], object], on_error: Callable[[Exception], None]
    ) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._every_s, self._tick, self._on_error = every_s, tick, on_error

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the tick in progress, if any (waiting at most ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # a bad moment must not end the thread
                self._on_error(exc)
            self._stop.wait(self._every_s)

"""Drop-in for the ESS ``scicat_background_ingestor`` that the online ingestor spawns.

``scicat_background_ingestor -c CONFIG --nexus-file FILE [--done-writing-message-file M]``
exits 0 when the file is ingested (or was already), non-zero with a one-line reason
otherwise. With ``queue.enabled: true`` in the config it enqueues the file instead and exits
0 once the file is safely in Redis (or in ``queue.spool_dir``), so today's online ingestor
feeds the queue unchanged.

One process per file: this module imports nothing heavy. With a spool and a worker flushing
it on this host, the request is handed over through the spool (``dropin/fast.py``: standard
library and PyYAML only); otherwise the click command in ``cli/dropin.py`` runs.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Console-script entry point."""
    from .dropin.fast import run

    try:
        status = run(sys.argv[1:])
    except Exception:  # nothing spooled yet, or a harmless repeat (same key): the slow path decides
        status = None
    if status is not None:
        sys.exit(status)
    from .cli.common import main_entry
    from .cli.dropin import background_ingestor

    main_entry(background_ingestor)

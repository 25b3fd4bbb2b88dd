"""The five-task chain of one file, built from task names (no import of ``tasks.py``).

Producers (``producer.py``, the CLI, the drop-in) publish chains without importing the task
module, which would pull in the step code; the worker registers the tasks under these names.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain

from .celery_config import FIRST_STEP_PRIORITY, STEP_PRIORITY
from .config import Config
from .job import Job
from .steps import STEPS

__all__ = ["FAILURE_TASK", "SUBMIT_TASK", "TASK_NAMES", "build_chain", "step_of_task"]

#: Step name -> Celery task name.
TASK_NAMES = {step: f"offline_ingestor.{step.replace('-', '_')}" for step in STEPS}
#: The chain's errback: records failures that happened outside the step executor.
FAILURE_TASK = "offline_ingestor.record_failure"
#: The entry point for non-Python producers (see ``producer.py``).
SUBMIT_TASK = "offline_ingestor.submit"


def step_of_task(task_name: str) -> str:
    """The step a task name runs (the name itself when it is not a step task)."""
    return next((step for step, name in TASK_NAMES.items() if name == task_name), task_name)


def build_chain(app: Celery, job: Job, config: Config) -> Any:
    """The chain for ``job``: the first step gets ``{key, file}``, each next one its result.

    Started chains go before new ones (Redis priorities, ``celery_config.py``), so a long
    backlog does not hold back files that are half done.
    """
    ref = {"key": job["key"], "file": job["file"]}
    queue = config.queue.queue_name
    first, *rest = STEPS
    signatures = [
        app.signature(
            TASK_NAMES[first], args=(ref,), immutable=True, queue=queue, priority=FIRST_STEP_PRIORITY
        ),
        *(app.signature(TASK_NAMES[step], queue=queue, priority=STEP_PRIORITY) for step in rest),
    ]
    return chain(*signatures).on_error(app.signature(FAILURE_TASK, queue=queue))

"""One file's five steps and the one executor that runs them: no Celery, no Redis.

``job`` (what a file is), ``steps`` (the five plain functions), ``writes`` (the SciCat writes,
exactly once), ``executor`` (one attempt of one step), ``ledger`` (where progress is kept),
``retry`` (how often, how long), ``runtime`` (what steps share), ``pipeline`` (all five in
this process: ``ingest-now`` and the drop-in).
"""

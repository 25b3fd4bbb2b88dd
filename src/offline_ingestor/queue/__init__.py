"""Redis without Celery: the connection, the job store, the local spool and submission."""

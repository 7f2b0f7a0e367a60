"""Operations: the ``/health``, ``/metrics`` and ``/status`` endpoint of every long-running process.

- :mod:`genesis.ops.metrics`: the Prometheus metrics and the helpers that record them.
- :mod:`genesis.ops.collectors`: metrics read at scrape time (queue depth, DLQ, cameras).
- :mod:`genesis.ops.health`: the health checks (broker, database, models, cameras).
- :mod:`genesis.ops.status`: what workers, the capture and beat show.
- :mod:`genesis.ops.server`: the HTTP endpoint.
- :mod:`genesis.ops.celery_hooks`: Celery signals that start it and record the task metrics.

See docs/operations.md.
"""

"""Thin Celery tasks, one module per queue; routing in ``genesis.tasks.routing``."""

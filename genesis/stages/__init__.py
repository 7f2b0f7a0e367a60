"""Pure stages in flow order: capture, detect, track, recognize, analytics.

Each stage takes domain dataclasses and returns domain dataclasses; stateful stages keep
their state in a small per-camera object. The embedded runner and the Celery tasks call
the same stages.
"""

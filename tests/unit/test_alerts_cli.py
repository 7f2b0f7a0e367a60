"""`genesis alerts` time filters, and where the alert tasks are routed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genesis.cli.alerts import parse_time
from genesis.config import Settings
from genesis.tasks import routing


def test_since_and_until_take_iso_times_or_durations_ago() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_time("30m", now) == now - timedelta(minutes=30)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("1.5d", now) == now - timedelta(hours=36)
    assert parse_time("1w", now) == now - timedelta(days=7)
    assert parse_time("2026-11-28T10:00", now) == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert parse_time("2026-11-28T10:00+01:00", now) == datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither an ISO date/time"):
        parse_time("yesterday", now)


def test_alerts_are_stored_on_the_store_queue_and_delivered_on_analytics() -> None:
    queues = routing.task_queues(Settings())
    assert queues[routing.SAVE_ALERTS] == "store"
    assert queues[routing.DELIVER_ALERT] == "analytics"

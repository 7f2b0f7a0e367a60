"""The analytics schedule run by ``celery -A genesis beat``: rollups and retention purges."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from genesis.config._base import StrictModel

Granularity = Literal["minute", "hour", "day"]



def _all_granularities() -> list[Granularity]:
    return ["minute", "hour", "day"]


class RollupsConfig(StrictModel):
    """Which rollups beat schedules, how often, how late data may arrive, how long rollups are kept."""

    enabled: bool = Field(default=True, description="Schedule rollups and purges in `celery -A genesis beat`.")
    granularities: list[Granularity] = Field(default_factory=_all_granularities, description="Rollups to compute.")
    minute_every_s: float = Field(default=60.0, gt=0, description="How often the minute rollup runs.")
    hour_every_s: float = Field(default=300.0, gt=0, description="How often the hour rollup runs.")
    day_every_s: float = Field(default=3600.0, gt=0, description="How often the day rollup runs.")
    lag_s: float = Field(
        default=60.0, ge=0,
        description="Late-data allowance: a bucket is rolled up once it ended at least this long ago.",
    )
    recompute_buckets: int = Field(
        default=3, ge=1, le=1000,
        description="Each scheduled rollup recomputes this many finished buckets (late rows are picked up).",
    )
    purge_every_s: float = Field(default=3600.0, gt=0, description="How often the retention purge runs.")
    storage_every_s: float = Field(
        default=3600.0, gt=0,
        description="How often storage upkeep runs: PostgreSQL day partitions created ahead, heatmap grids of "
                    "past hours merged.",
    )
    partition_days_ahead: int = Field(
        default=3, ge=1, le=60, description="PostgreSQL day partitions are created this many days ahead.")
    heat_merge_after_s: float = Field(
        default=3600.0, ge=0,
        description="An hour's heatmap grids are merged into one row once the hour ended this long ago (late "
                    "writes of a merged hour would be added again: keep it above the broker's redelivery time).",
    )
    keep_minute_days: int = Field(default=7, ge=1, description="Retention of minute rollups.")
    keep_hour_days: int = Field(default=90, ge=1, description="Retention of hour rollups.")
    keep_day_days: int = Field(default=1825, ge=1, description="Retention of day rollups.")

    @field_validator("granularities")
    @classmethod
    def _unique(cls, values: list[Granularity]) -> list[Granularity]:
        if len(set(values)) != len(values):
            raise ValueError("granularities must not repeat")
        return values

    def every_s(self, granularity: Granularity) -> float:
        return {"minute": self.minute_every_s, "hour": self.hour_every_s, "day": self.day_every_s}[granularity]

    def keep_days(self, granularity: Granularity) -> int:
        return {"minute": self.keep_minute_days, "hour": self.keep_hour_days, "day": self.keep_day_days}[granularity]

"""Shared request parameters: text that is safe for both databases, times, pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

from genesis.api.errors import ApiError
from genesis.config.cameras import CAMERA_ID_PATTERN, MAX_CAMERA_ID
from genesis.domain.names import check_identity_name, check_label

_BAD_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def clean_text(value: str) -> str:
    if _BAD_TEXT.search(value):
        raise ValueError("must not contain control characters")
    return value


def _clean_opt(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


SafeText = Annotated[str, AfterValidator(clean_text)]
"""Text without NUL/control characters or lone surrogates (PostgreSQL refuses those)."""

IdentityName = Annotated[str, AfterValidator(check_identity_name)]
"""A new identity name: the one name rule of :mod:`genesis.domain.names` (422 with the reason)."""
KeyName = Annotated[str, AfterValidator(lambda v: check_label(v, "key name") if v.strip() else "")]
"""An API key's name: the same rule (empty: a default name)."""

CameraQ = Annotated[str | None, Query(max_length=MAX_CAMERA_ID, pattern=CAMERA_ID_PATTERN, description="Camera id.")]
RunQ = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Run id.")]
NameQ = Annotated[str | None, Query(max_length=128, description="Identity name."), AfterValidator(_clean_opt)]
ZoneQ = Annotated[str | None, Query(max_length=64, description="Zone name."), AfterValidator(_clean_opt)]
LineQ = Annotated[str | None, Query(max_length=64, description="Line name."), AfterValidator(_clean_opt)]
TrackQ = Annotated[int | None, Query(ge=0, le=2**62, description="Track id (within a run).")]
SinceQ = Annotated[
    datetime | None, Query(description="Runs still going at or after this time (ISO 8601; naive = UTC).")
]
UntilQ = Annotated[datetime | None, Query(description="Runs started at or before this time (ISO 8601; naive = UTC).")]
TsFromQ = Annotated[
    float | None, Query(ge=-1e12, le=1e12, allow_inf_nan=False, description="Media time in a run from (s).")
]
TsToQ = Annotated[
    float | None, Query(ge=-1e12, le=1e12, allow_inf_nan=False, description="Media time in a run to (s).")
]
LimitQ = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
OffsetQ = Annotated[int, Query(ge=0, le=2**31, description="Items to skip.")]


def utc(value: datetime | None, name: str) -> datetime | None:
    """A timezone-aware UTC datetime (naive means UTC); a 422 for one that cannot be converted."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ApiError(422, f"{name}: out of range", details=[{"field": name, "message": "out of range"}]) from None

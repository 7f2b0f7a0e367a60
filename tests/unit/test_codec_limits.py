"""The state codec refuses hostile JSON with its own error (issue 23, item 13): nesting past
``MAX_DEPTH`` (no RecursionError), NaN/Infinity, and numbers out of range (1e400, 10**400)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from genesis.domain.codec import MAX_DEPTH, CodecError, decode_value, dumps, load_json, loads


@dataclass(frozen=True)
class Sample:
    value: float
    count: int
    extra: dict[str, object]


DEEP = 100_000


@pytest.mark.parametrize("raw", [
    "[" * DEEP + "]" * DEEP,
    '{"a":' * DEEP + "1" + "}" * DEEP,
    "[1," * DEEP + "1" + "]" * DEEP,
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),  # past the bound but well within Python's recursion limit
])
def test_deep_nesting_is_a_codec_error(raw: str) -> None:
    with pytest.raises(CodecError, match="nested deeper"):
        load_json(raw)
    with pytest.raises(CodecError, match="nested deeper"):
        loads(Sample, '{"value": 1.0, "count": 1, "extra": ' + raw + "}")


def test_nesting_within_the_bound_is_read() -> None:
    raw = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_json(raw) is not None


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400,
                                    str(2**64), "1" + "0" * 5000])
def test_non_finite_and_out_of_range_numbers_are_codec_errors(number: str) -> None:
    with pytest.raises(CodecError, match=r"number|range"):
        load_json(f"[{number}]")
    with pytest.raises(CodecError, match=r"number|range"):
        loads(Sample, f'{{"value": {number}, "count": 1, "extra": {{}}}}')


def test_non_finite_floats_of_a_message_are_refused() -> None:
    """Celery's JSON (not ours) reads NaN: the codec refuses it when it decodes the value."""
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(CodecError, match="finite"):
            decode_value(float, value)


def test_ordinary_values_still_round_trip() -> None:
    sample = Sample(1.5, 2**63, {"nested": [[1, 2.5e-300, -7]]})
    assert loads(Sample, dumps(sample)) == sample
    assert load_json("[-9223372036854775808, 18446744073709551615, 0.1]") == [-2**63, 2**64 - 1, 0.1]

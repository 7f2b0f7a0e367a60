"""``encode``'s fast paths (exact plain types, lists, dataclasses by cached field names) give what the general
rules give: enums of int or str by value, numpy scalars as numbers, tuples and deques as lists, classes refused."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np
import pytest

from genesis.domain import Detection, FrameRef
from genesis.domain.codec import CodecError, decode, dumps, encode, loads


class Colour(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


@dataclass(frozen=True)
class Inner:
    level: Level
    colour: Colour
    values: tuple[float, ...]


@dataclass
class Outer:
    name: str
    inner: Inner
    items: list[Inner] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    vector: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    recent: deque[int] = field(default_factory=deque)
    missing: int | None = None


def test_enums_subclasses_and_numpy_values_encode_by_value() -> None:
    inner = Inner(Level.HIGH, Colour.RED, (np.float64(0.5), 2.0))
    out = encode(Outer("a", inner, [inner], {"k": np.int64(3)}, np.array([1.5, 2.5], np.float32), deque([1, 2])))
    text = json.dumps(out, sort_keys=True)
    assert json.loads(text) == {
        "name": "a",
        "inner": {"level": 3, "colour": "red", "values": [0.5, 2.0]},
        "items": [{"level": 3, "colour": "red", "values": [0.5, 2.0]}],
        "counts": {"k": 3},
        "vector": {"dtype": "float32", "shape": [2], "data": "AADAPwAAIEA="},
        "recent": [1, 2],
        "missing": None,
    }
    assert type(out["inner"]["level"]) is int and type(out["inner"]["colour"]) is str


def test_a_class_is_not_a_value() -> None:
    with pytest.raises(CodecError):
        encode(Inner)


def test_domain_values_round_trip() -> None:
    ref = FrameRef("cam", 7, 0.28, "k7", 1280, 720, static=True, window=(0, 0, 640, 360))
    assert loads(FrameRef, dumps(ref)) == ref
    det = Detection((1.0, 2.0, 3.5, 4.25), 0.875, 0)
    assert decode(Detection, json.loads(dumps(det))) == det

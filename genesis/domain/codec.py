"""JSON codec of our own types: Celery messages and the state the distributed sequencer keeps in
Redis. Nothing read back is ever unpickled or evaluated: a value is rebuilt from the *declared*
type (a dataclass's fields, a class's annotations), and what does not fit that type is refused
with :class:`CodecError`.

What it handles: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` (base64); ``list``, ``tuple`` (fixed and
``tuple[X, ...]``), ``dict`` (any key type this codec handles: a key that is not a ``str``
travels as the JSON text of its encoding), ``set``/``frozenset``, ``collections.Counter``,
``collections.deque``; enums (by value); dataclasses (by field, nested); ``numpy.ndarray``
(explicit dtype from a short list of numeric dtypes, shape, little-endian bytes in base64), and
``X | None``.

Text read back goes through :func:`load_json`, which refuses (with :class:`CodecError`, never a
``RecursionError`` or an infinite number) JSON nested deeper than :data:`MAX_DEPTH`, the constants
``NaN``/``Infinity`` and numbers out of range (``1e400``, an integer past 64 bits); a float decoded
from a message must be finite too.

Objects that are not dataclasses (the stateful per-camera stages) keep their state with
:class:`SavedState`: every instance attribute is saved by its class-level annotation, except
those the constructor rebuilds from the settings (``STATE_REBUILT``); an attribute without an
annotation is an error, never silently lost.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import types
import typing
from collections import Counter, defaultdict, deque
from enum import Enum
from typing import Any, ClassVar, TypeVar, get_args, get_origin, get_type_hints

import numpy as np

T = TypeVar("T")


class CodecError(ValueError):
    """A value that does not decode as the type it is read as (never executed, never half-used)."""


ARRAY_DTYPES = frozenset({
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
})
"""The only dtypes an encoded array may name (no object arrays: they would need pickle)."""


MAX_DEPTH = 64
"""Deepest nesting of arrays and objects :func:`load_json` reads (the state's types nest about a dozen)."""
MAX_INT = 2**64
"""Integers read back are within ``-MAX_INT < n < MAX_INT`` (the widest dtype is 64 bits)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise CodecError(f"number {text[:40]} is out of range (not a finite float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise CodecError(f"integer {text[:40]}... is out of range")
    value = int(text)
    if not -MAX_INT < value < MAX_INT:
        raise CodecError(f"integer {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise CodecError(f"{name} is not a number (non-finite numbers are not read)")


def _check_depth(value: Any) -> None:
    """CodecError if ``value`` nests lists/dicts deeper than :data:`MAX_DEPTH` (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            raise CodecError(f"JSON nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def load_json(raw: str | bytes, what: str = "value") -> Any:
    """JSON text as Python values, for :func:`decode`: at most :data:`MAX_DEPTH` levels deep, finite
    numbers only, integers within :data:`MAX_INT`; :class:`CodecError` (naming ``what``) otherwise."""
    try:
        data = json.loads(raw, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant)
    except CodecError as exc:
        raise CodecError(f"{what}: {exc}") from None
    except RecursionError:
        raise CodecError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodecError(f"{what}: not JSON ({exc})") from None
    try:
        _check_depth(data)
    except CodecError as exc:
        raise CodecError(f"{what}: {exc}") from None
    return data


def _encode_array(a: np.ndarray) -> dict[str, Any]:
    name = a.dtype.name
    if name not in ARRAY_DTYPES:
        raise CodecError(f"arrays of dtype {name} are not encoded")
    data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"dtype": name, "shape": list(a.shape), "data": base64.b64encode(data.tobytes()).decode("ascii")}


def _decode_array(value: Any) -> np.ndarray:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise CodecError("an array is an object with dtype, shape and data")
    name, shape, data = value["dtype"], value["shape"], value["data"]
    if name not in ARRAY_DTYPES:
        raise CodecError(f"array dtype {name!r} is not one of {sorted(ARRAY_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        raise CodecError(f"array shape {shape!r} is not a list of sizes")
    if not isinstance(data, str):
        raise CodecError("array data is not base64 text")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CodecError(f"array data is not base64: {exc}") from None
    dtype = np.dtype(name).newbyteorder("<")
    if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise CodecError(f"array data holds {len(raw)} bytes, not {shape} x {name}")
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(name)).reshape(shape)


def _encode_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(encode(key), sort_keys=True)


_PLAIN: frozenset[type] = frozenset({type(None), bool, int, float, str})
"""Types encoded as themselves (exactly these: a subclass such as a str enum goes the long way)."""
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}
_UNSEEN = ("",)


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of dataclass ``cls`` (None: not a dataclass), looked up once per class."""
    names = _FIELD_NAMES.get(cls, _UNSEEN)
    if names is _UNSEEN:
        names = _FIELD_NAMES[cls] = (tuple(f.name for f in dataclasses.fields(cls))
                                     if dataclasses.is_dataclass(cls) else None)
    return names


def encode(obj: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, enums to values, arrays to dtype/shape/base64: JSON-ready.

    A sequencer pass encodes a camera's whole state (thousands of values): the plain types, lists and dataclasses
    are recognised by their exact type first."""
    cls = type(obj)
    if cls in _PLAIN:
        return obj
    if cls is list or cls is tuple:
        return [encode(v) for v in obj]
    names = _field_names(cls)
    if names is not None:
        return {name: encode(getattr(obj, name)) for name in names}
    if isinstance(obj, (bool, int, float, str)):
        return obj.value if isinstance(obj, Enum) else obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple, deque)):
        return [encode(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((encode(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, dict):
        return {_encode_key(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, SavedState):
        return obj.export_state()
    raise CodecError(f"{type(obj).__name__} values are not encoded")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _decode_key(tp: Any, key: str) -> Any:
    if tp is str or tp is Any:
        return key
    try:
        raw = load_json(key, "dict key")
    except CodecError:
        raise CodecError(f"dict key {key[:40]!r} is not the encoding of a {tp}") from None
    return decode_value(tp, raw)


def _expect(ok: bool, tp: Any, value: Any) -> None:
    if not ok:
        raise CodecError(f"expected {getattr(tp, '__name__', tp)}, got {type(value).__name__}")


def decode_value(tp: Any, value: Any) -> Any:
    """``value`` (what :func:`encode` made) rebuilt as type ``tp``; :class:`CodecError` if it does not fit."""
    if tp is Any or tp is object or isinstance(tp, TypeVar):
        return value
    origin = get_origin(tp)
    if origin is typing.ClassVar:
        (tp,) = get_args(tp)
        origin = get_origin(tp)
    if value is None:
        if tp is type(None) or (origin in (typing.Union, types.UnionType) and type(None) in get_args(tp)):
            return None
        raise CodecError(f"{getattr(tp, '__name__', tp)} may not be null")
    if origin in (typing.Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return decode_value(members[0], value)
        for member in members:  # primitives only: the first member the value fits
            if member in (bool, int, float, str) and _fits(member, value):
                return decode_value(member, value)
        raise CodecError(f"{value!r:.40} fits none of {tp}")
    if tp is np.ndarray or origin is np.ndarray:
        return _decode_array(value)
    if origin is tuple:
        _expect(isinstance(value, list), tp, value)
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode_value(args[0], v) for v in value)
        if len(args) != len(value):
            raise CodecError(f"expected {len(args)} items, got {len(value)}")
        return tuple(decode_value(a, v) for a, v in zip(args, value, strict=True))
    if origin in (list, deque, set, frozenset) or tp in (list, tuple):
        _expect(isinstance(value, list), tp, value)
        args = get_args(tp)
        items = [decode_value(args[0] if args else Any, v) for v in value]
        return (origin or tp)(items)
    if origin in (dict, Counter, defaultdict) or tp in (dict, Counter):
        _expect(isinstance(value, dict), tp, value)
        args = get_args(tp)
        ktp, vtp = (args[0], args[1]) if len(args) == 2 else ((args[0], int) if args else (Any, Any))
        out = {_decode_key(ktp, k): decode_value(vtp, v) for k, v in value.items()}
        return Counter(out) if (origin or tp) is Counter else out
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return decode(tp, value)
        if issubclass(tp, Enum):
            try:
                return tp(value)
            except ValueError:
                raise CodecError(f"{value!r:.40} is not a {tp.__name__}") from None
        if tp in (bool, int, float, str):
            _expect(_fits(tp, value), tp, value)
            if tp is float and not math.isfinite(value):
                raise CodecError(f"{value!r} is not a finite number")
            return float(value) if tp is float else value
        if tp is bytes:
            _expect(isinstance(value, str), tp, value)
            try:
                return base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise CodecError(f"bytes are not base64: {exc}") from None
    raise CodecError(f"values of type {tp} are not decoded")


def _fits(tp: type, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def decode(cls: type[T], data: Any) -> T:
    """The dataclass ``cls`` from what ``encode`` made of it (unknown keys are an error)."""
    if not isinstance(data, dict):
        raise CodecError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - fields
    if unknown:
        raise CodecError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    try:
        return cls(**{k: decode_value(hints[k], v) for k, v in data.items()})
    except TypeError as exc:  # a required field is missing
        raise CodecError(f"{cls.__name__}: {exc}") from None


def dumps(obj: Any) -> str:
    """``obj`` encoded as compact JSON text (no NaN: every number must be finite)."""
    return json.dumps(encode(obj), separators=(",", ":"), allow_nan=False)


def loads(cls: type[T], raw: str | bytes) -> T:
    """The dataclass ``cls`` from :func:`dumps` text; :class:`CodecError` for anything else."""
    return decode(cls, load_json(raw, cls.__name__))


# -- state of objects that are not dataclasses --------------------------------------------------


def _attributes(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "__dict__"):
        return dict(vars(obj))
    slots = [s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ())]
    return {s: getattr(obj, s) for s in slots if hasattr(obj, s)}


class SavedState:
    """Mixin: ``export_state`` / ``import_state`` of every instance attribute.

    A nested :class:`SavedState` (or a list of them, as many as the constructor builds) is saved
    and restored in place; any other attribute by its class-level annotation. Attributes named in
    ``STATE_REBUILT`` are left out: the constructor makes them again from the same settings. An
    attribute that is neither annotated nor rebuilt is an error at export (add the annotation).
    """

    STATE_REBUILT: ClassVar[frozenset[str]] = frozenset()

    def export_state(self) -> dict[str, Any]:
        hints = _hints(type(self))
        out: dict[str, Any] = {}
        for name, value in _attributes(self).items():
            if name in self.STATE_REBUILT:
                continue
            if isinstance(value, SavedState):
                out[name] = value.export_state()
            elif isinstance(value, list) and value and all(isinstance(v, SavedState) for v in value):
                out[name] = [v.export_state() for v in value]
            elif name in hints:
                out[name] = encode(value)
            else:
                raise CodecError(f"{type(self).__name__}.{name} has no class-level type annotation: annotate it "
                                 "(or name it in STATE_REBUILT) so that its state can be saved")
        return out

    def import_state(self, data: Any) -> None:
        name_of = type(self).__name__
        if not isinstance(data, dict):
            raise CodecError(f"{name_of}: expected an object, got {type(data).__name__}")
        current = {k: v for k, v in _attributes(self).items() if k not in self.STATE_REBUILT}
        if set(data) != set(current):
            raise CodecError(f"{name_of}: state fields {sorted(data)} are not {sorted(current)}")
        hints = _hints(type(self))
        for name, raw in data.items():
            value = current[name]
            if isinstance(value, SavedState):
                value.import_state(raw)
            elif isinstance(value, list) and value and all(isinstance(v, SavedState) for v in value):
                if not isinstance(raw, list) or len(raw) != len(value):
                    raise CodecError(f"{name_of}.{name}: expected {len(value)} saved items")
                for item, item_raw in zip(value, raw, strict=True):
                    item.import_state(item_raw)
            else:
                try:
                    setattr(self, name, decode_value(hints[name], raw))
                except CodecError as exc:
                    raise CodecError(f"{name_of}.{name}: {exc}") from None

"""Hypothesis strategies for protobuf messages, built from their descriptors alone.

Nothing here knows a schema: every message type is walked field by field from its runtime
descriptor, so a new field, message or file in proto/ is covered without touching the tests.
Values are valid protobuf (valid UTF-8, in-range integers, float32-representable floats,
well-known types within their documented ranges), with the edge values a codec gets wrong:
integer extremes, -0.0, NaN, infinities, empty and non-ASCII strings, arbitrary bytes, unknown
values of open enums, proto3 `optional` set to its default, and empty sub-messages.

`Gap`s name edge values a flavour is known not to carry; a strategy built with `avoid=` leaves
them out, and `inject` builds one value that exhibits a gap (for an `xfail(strict=True)` test).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import descriptor, descriptor_pool, message, message_factory
from hypothesis import strategies as st

FD = descriptor.FieldDescriptor
Msg = message.Message
# types-protobuf types runtime descriptors as a union of the pure-Python and upb classes with
# Optional attributes throughout; these helpers walk whatever the runtime hands them.
Descriptor = Any
Field = Any

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
FLOAT32_MAX = struct.unpack("<f", struct.pack("<I", 0x7F7FFFFF))[0]
FLOAT32_TINY = struct.unpack("<f", struct.pack("<I", 0x00000001))[0]
# Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z; Duration: +-10,000 years.
TIMESTAMP_SECONDS = (-62135596800, 253402300799)
DURATION_SECONDS = (-315576000000, 315576000000)
NANOS = 999_999_999
# Past 2**52 microseconds (~142 years) a float no longer holds a duration to the microsecond.
HUGE_DURATION = 2**52 // 10**6

_INTEGERS: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: INT32,
    FD.TYPE_SINT32: INT32,
    FD.TYPE_SFIXED32: INT32,
    FD.TYPE_INT64: INT64,
    FD.TYPE_SINT64: INT64,
    FD.TYPE_SFIXED64: INT64,
    FD.TYPE_UINT32: UINT32,
    FD.TYPE_FIXED32: UINT32,
    FD.TYPE_UINT64: UINT64,
    FD.TYPE_FIXED64: UINT64,
}
FLOATING = (FD.TYPE_FLOAT, FD.TYPE_DOUBLE)


@dataclass(frozen=True)
class Gap:
    """An edge value one flavour cannot carry: left out of generated values, tested on its own."""

    name: str
    # "binary": the wire round trip loses it (so JSON does too); "json": only proto3 JSON does.
    layer: str
    reason: str
    # Whether a message type holds the gap directly, and a value of it that exhibits the gap.
    applies: Callable[[Descriptor], bool]
    inject: Callable[[Descriptor], Msg]


def message_class(desc: Descriptor) -> Any:
    return message_factory.GetMessageClass(desc)


def is_map(field: Field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_real_oneof_member(field: Field) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and not getattr(oneof, "is_synthetic", False)


def is_implicit_scalar(field: Field) -> bool:
    """A singular scalar without presence: its zero value is not written, so -0.0 is special."""
    return not field.is_repeated and field.message_type is None and not field.has_presence


def walk(desc: Descriptor) -> Iterator[Descriptor]:
    """`desc` and every message type nested in it, map entries excluded (they are not types a
    user names)."""
    if desc.GetOptions().map_entry:
        return
    yield desc
    for nested in desc.nested_types:
        yield from walk(nested)


# -- scalars --------------------------------------------------------------------------------


def _integers(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    edges = sorted({low, high, 0, 1, max(low, -1)})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _floats(width: int, *, negative_zero: bool, non_finite: bool) -> st.SearchStrategy[float]:
    biggest = FLOAT32_MAX if width == 32 else 1.7976931348623157e308
    tiniest = FLOAT32_TINY if width == 32 else 5e-324
    edges = [0.0, 1.0, -1.0, biggest, -biggest, tiniest, -tiniest]
    if non_finite:
        # One NaN bit pattern only: JSON has a single "NaN", so a sign or payload cannot survive it.
        edges += [math.inf, -math.inf, math.nan]
    finite = st.floats(width=32 if width == 32 else 64, allow_nan=False, allow_infinity=False)
    if not negative_zero:
        edges = [e for e in edges if not (e == 0 and math.copysign(1, e) < 0)]
        finite = finite.map(lambda f: 0.0 if f == 0 else f)
    return st.one_of(st.sampled_from(edges), finite)


_TEXT = st.one_of(
    st.sampled_from(["", "a", "héllo wörld", "日本語", "🎉 emoji", "\x00nul", "tab\tnew\nline"]),
    st.text(max_size=12),
)


# One return per kind of protobuf scalar reads better than a dispatch table here.
def scalar(field: Field, *, negative_zero: bool = True) -> st.SearchStrategy[Any]:  # noqa: PLR0911
    if field.type in _INTEGERS:
        return _integers(_INTEGERS[field.type])
    if field.type in FLOATING:
        width = 32 if field.type == FD.TYPE_FLOAT else 64
        return _floats(width, negative_zero=negative_zero, non_finite=True)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type == FD.TYPE_STRING:
        return _TEXT
    if field.type == FD.TYPE_BYTES:
        return st.one_of(st.just(b""), st.binary(max_size=24))
    if field.type == FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        if getattr(field.enum_type, "is_closed", False):
            return st.sampled_from(known)
        # Open (proto3) enums keep values the schema does not name.
        return st.one_of(st.sampled_from(known), st.integers(*INT32))
    raise AssertionError(f"no strategy for field type {field.type} of {field.full_name}")


def _map_key(field: Field) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_STRING:
        return _TEXT
    return scalar(field)


# -- well-known types and googleapis types with documented ranges --------------------------


def _timestamp(desc: Descriptor, avoid: frozenset[str]) -> st.SearchStrategy[Msg]:
    nanos = st.integers(0, NANOS)
    if "sub_microsecond_time" in avoid:
        nanos = nanos.map(lambda n: n - n % 1000)
    cls = message_class(desc)
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), _integers(TIMESTAMP_SECONDS), nanos)


def _duration(desc: Descriptor, avoid: frozenset[str]) -> st.SearchStrategy[Msg]:
    cls = message_class(desc)
    seconds = st.integers(0, DURATION_SECONDS[1]) | st.sampled_from(
        [0, 1, HUGE_DURATION - 1, HUGE_DURATION, DURATION_SECONDS[1]]
    )
    nanos = st.integers(0, NANOS)
    if "sub_microsecond_time" in avoid:
        nanos = nanos.map(lambda n: n - n % 1000)
    fractional_negative = "negative_fractional_duration" not in avoid
    fractional_huge = "huge_fractional_duration" not in avoid

    signs = [1] if "negative_duration" in avoid else [1, -1]

    def build(s: int, n: int, k: int) -> Msg:
        if (k < 0 and not fractional_negative) or (s >= HUGE_DURATION and not fractional_huge):
            n = 0
        # Seconds and nanos carry the same sign.
        return cast(Msg, cls(seconds=k * s, nanos=k * n))

    return st.builds(build, seconds, nanos, st.sampled_from(signs))


def _field_mask(desc: Descriptor, avoid: frozenset[str]) -> st.SearchStrategy[Msg]:
    # Paths that survive the JSON mapping (lower_snake <-> lowerCamel) losslessly.
    segment = st.from_regex(r"[a-z]{1,6}(_[a-z]{1,6}){0,2}", fullmatch=True)
    path = st.lists(segment, min_size=1, max_size=3).map(".".join)
    cls = message_class(desc)
    return st.lists(path, max_size=4).map(lambda paths: cls(paths=paths))


def _json_value(desc: Descriptor, depth: int) -> st.SearchStrategy[Msg]:
    """google.protobuf.Value: one kind always set, numbers finite (the type's documented rule)."""
    value_cls = message_class(desc)
    struct_cls = message_class(desc.fields_by_name["struct_value"].message_type)
    list_cls = message_class(desc.fields_by_name["list_value"].message_type)
    leaves = st.one_of(
        st.just(value_cls(null_value=0)),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: value_cls(number_value=f)),
        _TEXT.map(lambda s: value_cls(string_value=s)),
        st.booleans().map(lambda b: value_cls(bool_value=b)),
    )
    if depth <= 0:
        return leaves

    def as_struct(fields: dict[str, Msg]) -> Msg:
        v = value_cls()
        v.struct_value.SetInParent()
        for k, item in fields.items():
            v.struct_value.fields[k].CopyFrom(item)
        return cast(Msg, v)

    def as_list(items: list[Msg]) -> Msg:
        v = value_cls()
        v.list_value.SetInParent()
        v.list_value.values.extend(items)
        return cast(Msg, v)

    inner = _json_value(desc, depth - 1)
    _ = struct_cls, list_cls
    return st.one_of(
        leaves,
        st.dictionaries(_TEXT, inner, max_size=3).map(as_struct),
        st.lists(inner, max_size=3).map(as_list),
    )


def _struct(desc: Descriptor, depth: int) -> st.SearchStrategy[Msg]:
    cls = message_class(desc)
    entry = desc.fields_by_name["fields"].message_type
    value = _json_value(entry.fields_by_name["value"].message_type, depth)

    def build(fields: dict[str, Msg]) -> Msg:
        s = cls()
        for k, v in fields.items():
            s.fields[k].CopyFrom(v)
        return cast(Msg, s)

    return st.dictionaries(_TEXT, value, max_size=3).map(build)


def _list_value(desc: Descriptor, depth: int) -> st.SearchStrategy[Msg]:
    cls = message_class(desc)
    value = _json_value(desc.fields_by_name["values"].message_type, depth)
    return st.lists(value, max_size=3).map(lambda vs: cls(values=vs))


def _money(desc: Descriptor, avoid: frozenset[str]) -> st.SearchStrategy[Msg]:
    """google.type.Money as documented: ISO 4217-shaped code, nanos with the sign of units."""
    cls = message_class(desc)
    code = st.from_regex(r"[A-Z]{3}", fullmatch=True)

    def build(c: str, units: int, nanos: int) -> Msg:
        if units < 0 or (units == 0 and nanos < 0):
            nanos = -abs(nanos)
        elif units > 0:
            nanos = abs(nanos)
        return cast(Msg, cls(currency_code=c, units=units, nanos=nanos))

    return st.builds(build, code, _integers(INT64), st.integers(-NANOS, NANOS))


SPECIAL: dict[str, Callable[[Descriptor, frozenset[str]], st.SearchStrategy[Msg]]] = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Duration": _duration,
    "google.protobuf.FieldMask": _field_mask,
    "google.type.Money": _money,
}
JSON_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
ANY = "google.protobuf.Any"


# -- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Builder:
    """Strategies for every message type reachable from `universe` (the module's types, which
    are also what `Any` fields pack), with the gaps in `avoid` left out."""

    universe: Sequence[Descriptor]
    avoid: frozenset[str] = frozenset()
    # Message types (full names) never set, e.g. ones a flavour cannot map to JSON at all.
    exclude_types: frozenset[str] = frozenset()
    max_depth: int = 4
    max_items: int = 3

    def message(self, desc: Descriptor, depth: int | None = None) -> st.SearchStrategy[Msg]:
        depth = self.max_depth if depth is None else depth
        if desc.full_name in SPECIAL:
            return SPECIAL[desc.full_name](desc, self.avoid)
        if desc.full_name == "google.protobuf.Struct":
            return _struct(desc, min(depth, 2))
        if desc.full_name == "google.protobuf.Value":
            return _json_value(desc, min(depth, 2))
        if desc.full_name == "google.protobuf.ListValue":
            return _list_value(desc, min(depth, 2))
        if desc.full_name == ANY:
            return self._any(desc, depth)
        return st.composite(lambda draw: self._draw_message(draw, desc, depth))()

    def _any(self, desc: Descriptor, depth: int) -> st.SearchStrategy[Msg]:
        cls = message_class(desc)
        # A valid Any always names a type that can be resolved (JSON needs it); pack one of the
        # module's own types, one level shallower so recursion through Any ends.
        skip = {ANY, *self.exclude_types}
        packable = [d for d in self.universe if d.full_name not in skip]

        @st.composite
        def draw_any(draw: st.DrawFn) -> Msg:
            inner_desc = draw(st.sampled_from(packable))
            inner = draw(self.message(inner_desc, max(depth - 1, 0)))
            packed = cls()
            packed.Pack(inner)
            return cast(Msg, packed)

        return draw_any()

    def _draw_message(self, draw: st.DrawFn, desc: Descriptor, depth: int) -> Msg:
        msg = message_class(desc)()
        oneofs_done: set[str] = set()
        for field in desc.fields:
            if self._excluded(field):
                continue
            if is_real_oneof_member(field):
                oneof = field.containing_oneof
                if oneof.name in oneofs_done:
                    continue
                oneofs_done.add(oneof.name)
                members = [
                    f
                    for f in oneof.fields
                    if (f.message_type is None or depth > 0) and not self._excluded(f)
                ]
                chosen = draw(st.sampled_from([None, *members]))
                if chosen is not None:
                    self._set_singular(draw, msg, chosen, depth)
                continue
            if is_map(field):
                self._set_map(draw, msg, field, depth)
            elif field.is_repeated:
                self._set_repeated(draw, msg, field, depth)
            elif field.has_presence:
                # Message fields and proto3 `optional`: unset, or set (possibly to the default).
                if (field.message_type is None or depth > 0) and draw(st.booleans()):
                    self._set_singular(draw, msg, field, depth)
            else:
                self._set_singular(draw, msg, field, depth)
        return cast(Msg, msg)

    def _excluded(self, field: Field) -> bool:
        target = field.message_type
        if target is not None and is_map(field):
            target = target.fields_by_name["value"].message_type
        return target is not None and target.full_name in self.exclude_types

    def _value(self, field: Field, depth: int, *, singular: bool) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            return self.message(field.message_type, depth - 1)
        negative_zero = not (
            singular and "negative_zero" in self.avoid and is_implicit_scalar(field)
        )
        return scalar(field, negative_zero=negative_zero)

    def _set_singular(self, draw: st.DrawFn, msg: Msg, field: Field, depth: int) -> None:
        value = draw(self._value(field, depth, singular=True))
        if field.message_type is not None:
            sub = getattr(msg, field.name)
            sub.SetInParent()
            sub.CopyFrom(value)
        else:
            setattr(msg, field.name, value)

    def _set_repeated(self, draw: st.DrawFn, msg: Msg, field: Field, depth: int) -> None:
        if field.message_type is not None and depth <= 0:
            return
        items = draw(st.lists(self._value(field, depth, singular=False), max_size=self.max_items))
        container = getattr(msg, field.name)
        if field.message_type is not None:
            for item in items:
                container.add().CopyFrom(item)
        else:
            container.extend(items)

    def _set_map(self, draw: st.DrawFn, msg: Msg, field: Field, depth: int) -> None:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        if value_field.message_type is not None and depth <= 0:
            return
        if key_field.type == FD.TYPE_BOOL and "bool_map_key_json" in self.avoid:
            return
        entries = draw(
            st.dictionaries(
                _map_key(key_field),
                self._value(value_field, depth, singular=False),
                max_size=self.max_items,
            )
        )
        container = getattr(msg, field.name)
        for key, value in entries.items():
            if value_field.message_type is not None:
                container[key].CopyFrom(value)
            else:
                container[key] = value


def canonical(msg: Msg) -> bytes:
    """Deterministic bytes of `msg`, with every `Any` re-packed deterministically too: an
    `Any` holds its message as opaque bytes, so two equal messages may pack different bytes
    (map order). NaN and -0.0 compare by their bits, which is what the wire carries."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    _normalize(copy)
    return copy.SerializeToString(deterministic=True)


def _normalize(msg: Msg) -> None:
    if msg.DESCRIPTOR.full_name == ANY:
        inner_desc = _resolve_any(msg)
        if inner_desc is not None:
            inner = message_class(inner_desc)()
            msg.Unpack(inner)  # type: ignore[attr-defined]
            _normalize(inner)
            msg.value = inner.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
        return
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if is_map(field):
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _normalize(item)
        elif field.is_repeated:
            for item in value:
                _normalize(item)
        else:
            _normalize(value)


def _resolve_any(msg: Msg) -> Descriptor | None:
    name = msg.type_url.rpartition("/")[2]  # type: ignore[attr-defined]
    try:
        return descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None

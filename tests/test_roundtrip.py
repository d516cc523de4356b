"""Cross-flavour round trips, derived from the schema.

Every message type of the module (nested ones too) is discovered from its descriptor set; for
each, hypothesis generates valid grpcio messages (tests/strategies.py) and every value must
survive grpcio bytes -> betterproto -> bytes -> grpcio, and proto3 JSON both ways:
grpcio JSON -> betterproto, and betterproto JSON -> grpcio.

Edge values betterproto2 is known not to carry are `GAPS`: left out of the generated values and
each tested on its own as `xfail(strict=True)`, so a fixed upstream bug shows up as XPASS.
The tests import the installed wheels (nox -s test installs them), never packages/ sources.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import pytest
import report
from betterproto2_compiler.compile.naming import pythonize_class_name, pythonize_field_name
from conftest import REPO
from google.protobuf import json_format, message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    FD,
    FLOATING,
    HUGE_DURATION,
    Builder,
    Descriptor,
    Field,
    Gap,
    canonical,
    is_implicit_scalar,
    is_map,
    is_real_oneof_member,
    message_class,
    walk,
)

from protoship import config, image, output

# Modest and reproducible: the same examples on every run and every machine, no example
# database left behind.
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
FIELD_MASK = "google.protobuf.FieldMask"
BETTERPROTO2 = "https://github.com/betterproto/python-betterproto2"


@dataclass(frozen=True)
class Module:
    """The module's message types (runtime descriptors of the installed grpcio flavour) and
    where the betterproto flavour puts them."""

    descriptors: tuple[Descriptor, ...]
    import_root: str


@cache
def module() -> Module:
    cfg = config.load(REPO)
    with output.workspace(cfg) as work:
        img = image.compile_image(cfg, work)
    grpcio = next(f for f in cfg.flavours if f.import_root is None)
    betterproto = next(f for f in cfg.flavours if f.import_root is not None)
    assert not grpcio.exclude and not betterproto.exclude, (
        "a flavour leaves files out: round trips would need to skip them, with the reason"
    )
    found: list[Descriptor] = []
    for file in img.files:
        pb2 = importlib.import_module(file.python_module)
        for name in file.messages:
            found.extend(walk(pb2.DESCRIPTOR.message_types_by_name[name]))
    return Module(tuple(found), str(betterproto.import_root))


def betterproto_class(desc: Descriptor) -> Any:
    """The betterproto2 class of a message, named the way betterproto2_compiler names it: one
    module per proto package, nested types flattened (`Order.Line` -> `OrderLine`)."""
    package = desc.file.package
    prefixed = desc.full_name[len(package) + 1 :] if package else desc.full_name
    mod = importlib.import_module(f"{module().import_root}.{package}")
    return getattr(mod, pythonize_class_name(prefixed))


# -- the three checks -----------------------------------------------------------------------


def _same(expected: message.Message, got: message.Message, how: str) -> None:
    assert canonical(got) == canonical(expected), f"{how}:\nsent:\n{expected}\nback:\n{got}"


def same_values(want: message.Message, got: Any, where: str) -> None:
    """Field by field, `got` (betterproto) holds what `want` (grpcio) holds. Bytes alone cannot
    show this: a field whose type differs within one wire type (sint64 read as int64) parses and
    re-serializes to the very same bytes, with the wrong value in between."""
    by_number = {
        f.metadata["betterproto"].number: (f.name, f.metadata["betterproto"])
        for f in dataclasses.fields(got)
    }
    fields: list[Field] = list(want.DESCRIPTOR.fields)
    for field in fields:
        here = f"{where}.{field.name}"
        assert field.number in by_number, f"{here}: betterproto has no field {field.number}"
        attr, meta = by_number[field.number]
        assert attr == pythonize_field_name(field.name), f"{here}: named {attr} in betterproto"
        value = getattr(got, attr)
        wanted = getattr(want, field.name)
        if is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            assert set(value) == set(wanted), f"{here}: keys {set(value)} != {set(wanted)}"
            for key in wanted:
                _same_value(
                    value_field,
                    wanted[key],
                    value[key],
                    meta.map_meta[1].unwrap,
                    f"{here}[{key!r}]",
                )
        elif field.is_repeated:
            assert len(value) == len(wanted), f"{here}: {len(value)} items, not {len(wanted)}"
            for i, (w, g) in enumerate(zip(wanted, value, strict=True)):
                _same_value(field, w, g, meta.unwrap, f"{here}[{i}]")
        elif field.has_presence and not want.HasField(field.name):
            assert value is None, f"{here}: unset in grpcio, {value!r} in betterproto"
        else:
            _same_value(field, wanted, value, meta.unwrap, here)


def _same_value(field: Field, want: Any, got: Any, unwrap: Any, here: str) -> None:
    if field.message_type is not None:
        assert got is not None, f"{here}: set in grpcio, None in betterproto"
        same_values(want, unwrap().from_wrapped(got) if unwrap else got, here)
    elif field.type in FLOATING:
        assert isinstance(got, float), f"{here}: {got!r} is not a float"
        same = (math.isnan(want) and math.isnan(got)) or (
            want == got and math.copysign(1, want) == math.copysign(1, got)
        )
        assert same, f"{here}: {got!r} != {want!r}"
    elif field.type == FD.TYPE_ENUM:
        assert int(got) == want, f"{here}: {got!r} != {want!r}"
    else:
        assert type(got) is type(want) and got == want, f"{here}: {got!r} != {want!r}"


def check_binary(original: message.Message) -> None:
    better = betterproto_class(original.DESCRIPTOR).parse(original.SerializeToString())
    same_values(original, better, original.DESCRIPTOR.full_name)
    _same(original, type(original).FromString(bytes(better)), "grpcio -> betterproto -> grpcio")


def check_json(original: message.Message) -> None:
    cls = betterproto_class(original.DESCRIPTOR)
    from_json = cls.from_json(json_format.MessageToJson(original))
    _same(original, type(original).FromString(bytes(from_json)), "grpcio JSON -> betterproto")
    to_json = cls.parse(original.SerializeToString()).to_json()
    _same(original, json_format.Parse(to_json, type(original)()), "betterproto JSON -> grpcio")


# -- known gaps -----------------------------------------------------------------------------


def _fields_of_type(desc: Descriptor, full_name: str) -> list[Field]:
    return [
        f
        for f in desc.fields
        if f.message_type is not None and not is_map(f) and f.message_type.full_name == full_name
    ]


def _holds(full_name: str) -> Callable[[Descriptor], bool]:
    return lambda desc: bool(_fields_of_type(desc, full_name))


def _set_field(full_name: str, **values: Any) -> Callable[[Descriptor], message.Message]:
    def inject(desc: Descriptor) -> message.Message:
        field = _fields_of_type(desc, full_name)[0]
        msg = message_class(desc)()
        target = getattr(msg, field.name)
        sub = target.add() if field.is_repeated else target
        sub.SetInParent()
        for key, value in values.items():
            setattr(sub, key, value)
        return cast(message.Message, msg)

    return inject


def _implicit_floats(desc: Descriptor) -> list[Field]:
    return [
        f
        for f in desc.fields
        if f.type in FLOATING and is_implicit_scalar(f) and not is_real_oneof_member(f)
    ]


def _bool_key_maps(desc: Descriptor) -> list[Field]:
    return [
        f
        for f in desc.fields
        if is_map(f) and f.message_type.fields_by_name["key"].type == FD.TYPE_BOOL
    ]


def _bool_key_entry(desc: Descriptor) -> message.Message:
    msg = message_class(desc)()
    field = _bool_key_maps(desc)[0]
    value = field.message_type.fields_by_name["value"]
    container = getattr(msg, field.name)
    if value.message_type is not None:
        container[True].SetInParent()
    else:
        container[True] = value.default_value
    return cast(message.Message, msg)


def _negative_zero(desc: Descriptor) -> message.Message:
    msg = message_class(desc)()
    setattr(msg, _implicit_floats(desc)[0].name, -0.0)
    return cast(message.Message, msg)


GAPS = (
    Gap(
        "negative_zero",
        "binary",
        "betterproto2 0.10 drops -0.0 from singular float/double fields (it compares with the "
        f"0.0 default using ==); fixed after 0.10 by {BETTERPROTO2}/pull/226",
        lambda desc: bool(_implicit_floats(desc)),
        _negative_zero,
    ),
    Gap(
        "sub_microsecond_time",
        "binary",
        "betterproto2 maps Timestamp/Duration to datetime/timedelta, which stop at microseconds: "
        f"nanoseconds are truncated ({BETTERPROTO2}/pull/213, open)",
        lambda desc: bool(_fields_of_type(desc, TIMESTAMP) or _fields_of_type(desc, DURATION)),
        lambda desc: _set_field(
            TIMESTAMP if _fields_of_type(desc, TIMESTAMP) else DURATION, nanos=1
        )(desc),
    ),
    Gap(
        "negative_fractional_duration",
        "binary",
        "betterproto2 0.10 Duration.from_timedelta truncates seconds toward zero and takes a "
        "float modulo, so -1.5s is sent as seconds=-1, nanos=+500000000 (no upstream issue "
        "found; betterproto2_compiler/known_types/duration.py)",
        _holds(DURATION),
        _set_field(DURATION, seconds=-1, nanos=-500_000_000),
    ),
    Gap(
        "huge_fractional_duration",
        "binary",
        "betterproto2 0.10 Duration.from_timedelta divides microseconds as floats: past 2**53 us "
        "(~285 years) the fraction is lost (no upstream issue found; "
        "betterproto2_compiler/known_types/duration.py)",
        _holds(DURATION),
        _set_field(DURATION, seconds=HUGE_DURATION * 64, nanos=1_000),
    ),
    Gap(
        "negative_duration",
        "json",
        "betterproto2 0.10 Duration.from_dict accepts only r'^\\d+(\\.\\d+)?s$', so proto3 "
        "JSON '-1s' is rejected (no upstream issue found)",
        _holds(DURATION),
        _set_field(DURATION, seconds=-1),
    ),
    Gap(
        "bool_map_key_json",
        "json",
        "betterproto2 0.10 from_dict keeps proto3 JSON map keys as strings: a map<bool, ...> "
        'key "true" reaches the varint encoder as a str and raises TypeError (no upstream '
        "issue found; betterproto2/__init__.py Message.from_dict)",
        lambda desc: bool(_bool_key_maps(desc)),
        _bool_key_entry,
    ),
    Gap(
        "field_mask_json",
        "json",
        "betterproto2 0.10 has no proto3 JSON mapping for FieldMask (writes {'paths': [...]}, "
        f"rejects the string form): {BETTERPROTO2}/issues/181, fix in {BETTERPROTO2}/pull/239",
        _holds(FIELD_MASK),
        _set_field(FIELD_MASK, paths=["a_b"]),
    ),
)
BINARY_GAPS = frozenset(g.name for g in GAPS if g.layer == "binary")
# The JSON checks go through bytes too, so they avoid both kinds.
JSON_GAPS = frozenset(g.name for g in GAPS)
# A gap that no value of a type can avoid but by leaving that type out.
JSON_EXCLUDED_TYPES = frozenset({FIELD_MASK})


def _names() -> list[str]:
    return [d.full_name for d in module().descriptors]


def _descriptor(name: str) -> Descriptor:
    return next(d for d in module().descriptors if d.full_name == name)


@cache
def _builder(layer: str) -> Builder:
    if layer == "binary":
        return Builder(module().descriptors, avoid=BINARY_GAPS)
    return Builder(module().descriptors, avoid=JSON_GAPS, exclude_types=JSON_EXCLUDED_TYPES)


# -- tests ----------------------------------------------------------------------------------


def test_module_has_message_types() -> None:
    names = _names()
    assert names, "no message types found in the module: nothing would be round-tripped"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", _names())
def test_betterproto_name_matches_its_message_pool(name: str) -> None:
    """The class found by the compiler's naming rules is the one betterproto2 registered for
    this proto name (what `Any` resolves), so no test below checks the wrong class."""
    cls = betterproto_class(_descriptor(name))
    pool = importlib.import_module(f"{module().import_root}.message_pool").default_message_pool
    assert pool.url_to_type[f"type.googleapis.com/{name}"] is cls


@pytest.mark.parametrize("name", _names())
def test_binary_round_trip(name: str, request: pytest.FixtureRequest) -> None:
    @EXAMPLES
    @given(_builder("binary").message(_descriptor(name)))
    def run(original: message.Message) -> None:
        check_binary(original)

    run()
    report.record(request.config, report.ROUND_TRIPPED, name)


@pytest.mark.parametrize("name", _names())
def test_json_round_trip(name: str) -> None:
    @settings(EXAMPLES, max_examples=40)
    @given(_builder("json").message(_descriptor(name)))
    def run(original: message.Message) -> None:
        check_json(original)

    run()


def _gap_cases() -> list[Any]:
    return [
        pytest.param(
            gap,
            desc.full_name,
            id=f"{gap.name}-{desc.full_name}",
            marks=pytest.mark.xfail(strict=True, reason=gap.reason),
        )
        for gap in GAPS
        for desc in module().descriptors
        if gap.applies(desc)
    ]


@pytest.mark.parametrize(("gap", "name"), _gap_cases())
def test_known_gap(gap: Gap, name: str) -> None:
    value = gap.inject(_descriptor(name))
    (check_binary if gap.layer == "binary" else check_json)(value)


def test_strategies_reach_the_edges() -> None:
    """The generated values do contain what the module's schema allows: a strategy that
    silently stopped setting fields would make every round trip above pass."""
    seen: set[str] = set()

    def note(msg: message.Message) -> None:
        for field, value in msg.ListFields():
            seen.add(field.full_name)
            if field.message_type is None or is_map(field):
                continue
            for item in value if field.is_repeated else [value]:
                note(item)

    @settings(EXAMPLES, max_examples=40)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        for desc in module().descriptors:
            note(data.draw(_builder("binary").message(desc)))

    run()
    every = {f.full_name for d in module().descriptors for f in d.fields}
    missing = every - seen
    assert not missing, f"fields never set by the strategies: {sorted(missing)}"

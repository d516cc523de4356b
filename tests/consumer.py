"""Runs inside a fresh venv that has only the built wheels installed (and their dependencies).

Usage: consumer.py SPEC.json, where the spec names the image (a FileDescriptorSet of the module
plus imports), the modules to import, the betterproto import root, and the files each flavour
left out. It imports every module (run with -W error), then round-trips every message of the
module, nested ones included, grpcio bytes -> betterproto -> bytes -> grpcio, with fields filled
in from the descriptors, and checks that explicit presence survives. Knows nothing of any schema.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor, descriptor_pb2, message

FD = descriptor.FieldDescriptor
ZERO: dict[int, Any] = {
    FD.TYPE_STRING: "",
    FD.TYPE_BYTES: b"",
    FD.TYPE_BOOL: False,
    FD.TYPE_DOUBLE: 0.0,
    FD.TYPE_FLOAT: 0.0,
}
SOME: dict[int, Any] = {
    FD.TYPE_STRING: "héllo ✓",
    FD.TYPE_BYTES: b"\x00\xff",
    FD.TYPE_BOOL: True,
    FD.TYPE_DOUBLE: -1.5,
    FD.TYPE_FLOAT: 0.25,
    FD.TYPE_SINT32: -7,
    FD.TYPE_SINT64: -(2**40),
    FD.TYPE_SFIXED64: -3,
    FD.TYPE_INT64: 2**62,
    FD.TYPE_UINT64: 2**64 - 1,
    FD.TYPE_FIXED64: 2**63,
}


def fill(msg: message.Message, zero: bool, depth: int = 0) -> None:
    """Set every scalar field (defaults where `zero`, to probe presence), one oneof member,
    one element of each repeated scalar, and the first level of message fields."""
    seen_oneofs: set[str] = set()
    for field in msg.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry or field.is_repeated or depth >= 1:
                continue
            getattr(msg, field.name).SetInParent()
            # Well-known types constrain their values (a Duration within ±10,000 years, ...):
            # zeros are always valid for them.
            wkt = field.message_type.full_name.startswith("google.protobuf.")
            fill(getattr(msg, field.name), zero or wkt, depth + 1)
            continue
        if field.enum_type is not None:
            value: Any = field.enum_type.values[0 if zero else -1].number
        else:
            value = ZERO.get(field.type, 0) if zero else SOME.get(field.type, 7)
        if field.is_repeated:
            getattr(msg, field.name).append(value)
        else:
            setattr(msg, field.name, value)


def messages(fd: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Full names of the file's messages, nested ones included, map entries left out."""
    found = []
    stack = [(f"{fd.package}.{m.name}" if fd.package else m.name, m) for m in fd.message_type]
    while stack:
        name, proto = stack.pop()
        if proto.options.map_entry:
            continue
        found.append(name)
        stack += [(f"{name}.{n.name}", n) for n in proto.nested_type]
    return sorted(found)


def grpcio_class(name: str, fd: descriptor_pb2.FileDescriptorProto) -> Any:
    module = importlib.import_module(
        fd.name[: -len(".proto")].replace("/", ".").replace("-", "_") + "_pb2"
    )
    obj: Any = module
    relative = name[len(fd.package) + 1 :] if fd.package else name
    for part in relative.split("."):
        obj = getattr(obj, part)
    return obj


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    for name in spec["modules"]:
        importlib.import_module(name)
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(spec["image"]).read_bytes())
    pool = importlib.import_module(f"{spec['import_root']}.message_pool").default_message_pool
    grpcio_root = next(k for k in spec["excluded"] if k != spec["betterproto_key"])
    no_grpcio = set(spec["excluded"].get(grpcio_root, []))
    no_betterproto = set(spec["excluded"].get(spec["betterproto_key"], []))
    count = single = presence = 0
    for fd in fds.file:
        if fd.name not in spec["files"] or fd.name in no_grpcio:
            continue
        both = fd.name not in no_betterproto
        for name in messages(fd):
            cls = grpcio_class(name, fd)
            better = pool.url_to_type[f"type.googleapis.com/{name}"] if both else None
            for zero in (False, True):
                original = cls()
                fill(original, zero)
                data = original.SerializeToString(deterministic=True)
                if better is not None:
                    data = bytes(better.parse(data))
                back = cls.FromString(data)
                if back != original:
                    print(f"MISMATCH {name} (zero={zero}):\n{original}\n!=\n{back}")
                    return 1
                for field in cls.DESCRIPTOR.fields:
                    if (
                        field.has_presence
                        and not field.is_repeated
                        and original.HasField(field.name)
                    ):
                        if not back.HasField(field.name):
                            print(f"PRESENCE LOST {name}.{field.name} (zero={zero})")
                            return 1
                        presence += zero
            count += both
            single += not both
    print(
        f"round-tripped {count} messages across flavours and {single} in grpcio only; "
        f"{presence} default-valued present fields kept"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

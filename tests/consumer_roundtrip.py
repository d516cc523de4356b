"""Run inside a fresh venv that has the built wheels installed: round-trip every top-level
message of the module through both flavours. Usage: consumer_roundtrip.py IMAGE IMPORT_ROOT.

Values are filled in from the descriptors, so the script knows nothing of any schema."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from google.protobuf import descriptor, descriptor_pb2, message

FD = descriptor.FieldDescriptor
SIMPLE = {
    FD.TYPE_STRING: "héllo",
    FD.TYPE_BYTES: b"\x00\xff",
    FD.TYPE_BOOL: True,
    FD.TYPE_DOUBLE: 1.5,
    FD.TYPE_FLOAT: 0.25,
}


def fill(msg: message.Message) -> None:
    for field in msg.DESCRIPTOR.fields:
        if field.message_type is not None or field.containing_oneof is not None and not field.has_presence:
            continue
        if field.is_repeated:
            continue
        if field.type == FD.TYPE_ENUM:
            value: object = field.enum_type.values[-1].number
        else:
            value = SIMPLE.get(field.type, 7)
        setattr(msg, field.name, value)


def main() -> int:
    image, import_root = sys.argv[1], sys.argv[2]
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(image).read_bytes())
    count = 0
    for fd in fds.file:
        if fd.name.startswith("google/"):
            continue
        pb2 = importlib.import_module(fd.name[: -len(".proto")].replace("/", ".") + "_pb2")
        better = importlib.import_module(f"{import_root}.{fd.package}")
        for msg_proto in fd.message_type:
            grpc_msg = getattr(pb2, msg_proto.name)()
            fill(grpc_msg)
            data = grpc_msg.SerializeToString(deterministic=True)
            parsed = getattr(better, msg_proto.name).parse(data)
            back = type(grpc_msg).FromString(bytes(parsed))
            if back != grpc_msg:
                print(f"MISMATCH {fd.package}.{msg_proto.name}: {grpc_msg} != {back}")
                return 1
            count += 1
    print(f"round-tripped {count} messages")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())

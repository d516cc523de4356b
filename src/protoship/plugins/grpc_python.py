"""`protoc-gen-grpc_python`: grpcio-tools' gRPC generator as a protoc plugin executable.

buf only runs protoc builtins it knows (python, pyi, ...); grpcio-tools compiles its gRPC
generator into its own protoc instead of shipping a plugin binary. This adapter feeds the
CodeGeneratorRequest's descriptors back into that bundled protoc, so buf.gen.yaml can name it
like any other local plugin.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2


def _descriptor_set(raw: bytes) -> bytes:
    """The request's `proto_file` entries (field 15) as a FileDescriptorSet (field 1), copied
    at the wire level: decoding and re-encoding every descriptor in Python would cost more
    time and memory than the gRPC generator itself on a large tree."""
    out = bytearray()
    pos, end = 0, len(raw)
    while pos < end:
        key, pos = _varint(raw, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, start = _varint(raw, pos)
            pos = start + size
            if number == 15:
                out += b"\x0a" + _encode_varint(size) + raw[start:pos]
        else:
            raise ValueError(f"unexpected wire type {wire} in CodeGeneratorRequest")
    return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def generate(
    request: plugin_pb2.CodeGeneratorRequest, raw: bytes
) -> plugin_pb2.CodeGeneratorResponse:
    """Run grpcio-tools' bundled gRPC generator over the request's files. `request` needs only
    its `file_to_generate` and `parameter`; `raw` is the whole request as received."""
    from grpc_tools import protoc  # deferred: importing grpc_tools is the slow part

    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
        | plugin_pb2.CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS,
        minimum_edition=descriptor_pb2.EDITION_PROTO2,
        maximum_edition=descriptor_pb2.EDITION_2023,
    )
    with tempfile.TemporaryDirectory(prefix="protoship-grpc-") as tmp:
        descriptors = Path(tmp) / "request.binpb"
        descriptors.write_bytes(_descriptor_set(raw))
        out = Path(tmp) / "out"
        out.mkdir()
        target = f"{request.parameter}:{out}" if request.parameter else str(out)
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--descriptor_set_in={descriptors}",
                f"--grpc_python_out={target}",
                *request.file_to_generate,
            ]
        )
        if status != 0:
            response.error = f"grpcio-tools' gRPC generator exited with status {status}"
            return response
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            response.file.add(name=path.relative_to(out).as_posix(), content=path.read_text())
    return response


def main() -> None:
    raw = sys.stdin.buffer.read()
    # Only the file names and the parameter are decoded; the descriptors are copied as bytes.
    request = plugin_pb2.CodeGeneratorRequest.FromString(_without_files(raw))
    sys.stdout.buffer.write(generate(request, raw).SerializeToString())


def _without_files(raw: bytes) -> bytes:
    """The request minus its proto_file entries (the bulk of it)."""
    out = bytearray()
    pos, end = 0, len(raw)
    while pos < end:
        start_field = pos
        key, pos = _varint(raw, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, start = _varint(raw, pos)
            pos = start + size
        else:
            raise ValueError(f"unexpected wire type {wire} in CodeGeneratorRequest")
        if number != 15:
            out += raw[start_field:pos]
    return bytes(out)


if __name__ == "__main__":
    main()

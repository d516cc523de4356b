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

from protoship import wire

# CodeGeneratorRequest.proto_file
_PROTO_FILE = 15


def _descriptor_set(raw: bytes) -> bytes:
    """The request's `proto_file` entries (field 15) as a FileDescriptorSet (field 1), copied
    at the wire level: decoding and re-encoding every descriptor in Python would cost more
    time and memory than the gRPC generator itself on a large tree."""
    return b"".join(
        wire.length_delimited(1, raw[payload])
        for number, _, payload in wire.fields(raw)
        if number == _PROTO_FILE
    )


def _without_files(raw: bytes) -> bytes:
    """The request minus its proto_file entries (the bulk of it)."""
    return b"".join(raw[whole] for number, whole, _ in wire.fields(raw) if number != _PROTO_FILE)


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


if __name__ == "__main__":
    main()

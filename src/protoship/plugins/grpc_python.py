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


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Run grpcio-tools' bundled gRPC generator over the request's files."""
    from grpc_tools import protoc  # deferred: importing grpc_tools is the slow part

    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
        | plugin_pb2.CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS,
        minimum_edition=descriptor_pb2.EDITION_PROTO2,
        maximum_edition=descriptor_pb2.EDITION_2023,
    )
    with tempfile.TemporaryDirectory(prefix="protoship-grpc-") as tmp:
        descriptors = Path(tmp) / "request.binpb"
        descriptors.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString()
        )
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
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()

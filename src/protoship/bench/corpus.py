"""Synthetic proto3 corpus for benchmarking code generators on large trees.

The tree is shaped like a real API monorepo: many versioned packages, files that import
siblings, other packages and well-known types, services with all four RPC kinds, nested
messages and enums, maps, oneofs, optional and repeated fields, and comments everywhere
(generators spend much of their time looking comments up, so a corpus without them would
flatter them). The output is deterministic and passes `buf lint` with the STANDARD rules.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

__all__ = ["compile_request", "write_corpus"]

_ORG = "synth"
_SCALARS = ("string", "int32", "int64", "uint32", "double", "bool", "bytes", "sint64", "fixed32")
_WELL_KNOWN = (
    ("google/protobuf/timestamp.proto", "google.protobuf.Timestamp"),
    ("google/protobuf/duration.proto", "google.protobuf.Duration"),
    ("google/protobuf/struct.proto", "google.protobuf.Struct"),
    ("google/protobuf/wrappers.proto", "google.protobuf.StringValue"),
)


def _package_name(index: int) -> str:
    return f"pkg{index:03d}"


def _file_stem(index: int) -> str:
    return f"file{index:03d}"


def _message_name(file_index: int, message_index: int) -> str:
    # Unique within the package because names must not collide across its files.
    return f"F{file_index:03d}Msg{message_index:03d}"


def _pascal(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.split("_"))


def _render_message(
    name: str,
    seed: int,
    sibling: str | None,
    foreign: str | None,
    well_known: str,
) -> list[str]:
    enum_name = f"{name}Kind"
    enum_prefix = "".join(
        f"_{char}" if char.isupper() and i else char for i, char in enumerate(enum_name)
    ).upper()
    lines = [
        f"// {name} is synthetic message number {seed}.",
        "//",
        "// It exists to give the generator realistic work: nested types, maps, oneofs",
        '// and cross-package references, plus comments with "quotes" and \\ backslashes.',
        f"message {name} {{",
        f"  // Kind of {name}.",
        f"  enum {enum_name} {{",
        f"    {enum_prefix}_UNSPECIFIED = 0; // Unset.",
        "    // The first real kind.",
        f"    {enum_prefix}_ALPHA = 1;",
        f"    {enum_prefix}_BETA = 2;",
        "  }",
        "",
        "  // A nested message with a few scalars.",
        "  message Detail {",
        "    string note = 1; // Free text.",
        "    repeated int64 values = 2;",
        "  }",
        "",
        "  // Identifier, unique per parent.",
        "  string id = 1;",
    ]
    number = 2
    for offset in range(3):
        scalar = _SCALARS[(seed + offset) % len(_SCALARS)]
        label = ("", "repeated ", "optional ")[(seed + offset) % 3]
        lines.append(f"  {label}{scalar} value_{offset} = {number}; // Trailing {offset}.")
        number += 1
    lines += [
        f"  {enum_name} kind = {number};",
        f"  Detail detail = {number + 1};",
        f"  map<string, Detail> details_by_key = {number + 2};",
        f"  map<int32, string> labels = {number + 3};",
        f"  {well_known} observed = {number + 4};",
    ]
    number += 5
    if sibling is not None:
        lines.append(f"  // Link to a message in a sibling file.\n  {sibling} sibling = {number};")
        number += 1
    if foreign is not None:
        lines.append(f"  repeated {foreign} foreign = {number};")
        number += 1
    lines += [
        "  // Exactly one payload.",
        "  oneof payload {",
        f"    string text = {number};",
        f"    bytes blob = {number + 1};",
        f"    Detail structured = {number + 2};",
        "  }",
        "}",
    ]
    return lines


def _render_service(stem: str, messages: list[str]) -> list[str]:
    service = f"{_pascal(stem)}Service"
    rpcs = [
        ("Get", "", ""),
        ("List", "", "stream "),
        ("Upload", "stream ", ""),
        ("Sync", "stream ", "stream "),
    ]
    lines = [f"// {service} exercises every RPC shape.", f"service {service} {{"]
    bodies: list[str] = []
    for i, (verb, client_stream, server_stream) in enumerate(rpcs):
        rpc = f"{verb}{_pascal(stem)}"
        lines.append(f"  // {rpc} is RPC number {i}.")
        lines.append(
            f"  rpc {rpc}({client_stream}{rpc}Request) returns ({server_stream}{rpc}Response);"
        )
        payload = messages[i % len(messages)]
        bodies += [
            "",
            f"// Request for {rpc}.",
            f"message {rpc}Request {{",
            "  string parent = 1;",
            f"  {payload} item = 2;",
            "}",
            "",
            f"message {rpc}Response {{",
            f"  repeated {payload} items = 1;",
            "  string next_page_token = 2;",
            "}",
        ]
    lines.append("}")
    return lines + bodies


def write_corpus(
    root: Path, packages: int, files_per_package: int, messages_per_file: int
) -> list[Path]:
    """Write a synthetic proto3 tree under ``root/<org>/<pkg>/v1/`` and return its files.

    Every file imports its predecessor in the same package, the same-numbered file of the
    previous package and a well-known type; every other file declares a service.
    """
    if packages < 1 or files_per_package < 1 or messages_per_file < 1:
        raise ValueError("packages, files_per_package and messages_per_file must be >= 1")
    written: list[Path] = []
    for p in range(packages):
        package_dir = root / _ORG / _package_name(p) / "v1"
        package_dir.mkdir(parents=True, exist_ok=True)
        proto_package = f"{_ORG}.{_package_name(p)}.v1"
        for f in range(files_per_package):
            stem = _file_stem(f)
            imports: set[str] = set()
            well_known_file, well_known = _WELL_KNOWN[(p + f) % len(_WELL_KNOWN)]
            imports.add(well_known_file)
            sibling = None
            if f > 0:
                imports.add(f"{_ORG}/{_package_name(p)}/v1/{_file_stem(f - 1)}.proto")
                sibling = _message_name(f - 1, 0)
            foreign = None
            if p > 0:
                imports.add(f"{_ORG}/{_package_name(p - 1)}/v1/{stem}.proto")
                foreign = f".{_ORG}.{_package_name(p - 1)}.v1.{_message_name(f, 0)}"
            lines = [
                "// Synthetic benchmark corpus; generated, do not edit.",
                'syntax = "proto3";',
                "",
                f"package {proto_package};",
                "",
                *(f'import "{name}";' for name in sorted(imports)),
                "",
            ]
            names = [_message_name(f, m) for m in range(messages_per_file)]
            for m, name in enumerate(names):
                lines += _render_message(
                    name,
                    seed=p * 7 + f * 3 + m,
                    # Only the first message links out, so the import graph stays shallow.
                    sibling=sibling if m == 0 else None,
                    foreign=foreign if m == 0 else None,
                    well_known=well_known,
                )
                lines.append("")
            if f % 2 == 0:
                lines += _render_service(stem, names)
            path = package_dir / f"{stem}.proto"
            path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
            written.append(path)
    return written


def _package_dir(name: str) -> Path:
    # Located without importing: grpc_tools is heavy to import and ships no type hints.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def compile_request(
    include_paths: Sequence[Path], files: Sequence[str], parameter: str = ""
) -> bytes:
    """Compile ``files`` with grpcio-tools' protoc and return a serialized plugin request.

    The request looks like the one protoc or buf hands a plugin: ``file_to_generate`` is
    ``files``, ``proto_file`` holds them and everything they import (well-known types
    included) in dependency order, each with its source info.
    """
    well_known = _package_dir("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="protoship-corpus-") as tmp:
        descriptor_set = Path(tmp) / "descriptors.binpb"
        # Over an argument file: thousands of paths can exceed the command-line limit.
        arguments = Path(tmp) / "protoc.args"
        arguments.write_text(
            "\n".join(
                [
                    *(f"-I{path}" for path in [*include_paths, well_known]),
                    "--include_imports",
                    "--include_source_info",
                    f"--descriptor_set_out={descriptor_set}",
                    *files,
                ]
            ),
            encoding="utf-8",
        )
        completed = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"@{arguments}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"protoc failed:\n{completed.stderr}")
        file_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    request = plugin_pb2.CodeGeneratorRequest(
        file_to_generate=list(files), proto_file=file_set.file
    )
    if parameter:
        request.parameter = parameter
    return request.SerializeToString()

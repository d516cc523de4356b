"""Compile the buf module once into an image that every later stage reads.

protoc (grpcio-tools' bundled libprotoc, the same compiler behind the `python` builtin) builds a
FileDescriptorSet with source info, resolving outside imports from installed distributions
(see toolchain). Files from outside the module are marked as imports with buf's image extension,
so `buf generate`, `buf lint` and `buf breaking` treat the result exactly like an image that
`buf build` made, and generate code only for the module's own files.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import keyword
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from google.protobuf import descriptor_pb2

from protoship import toolchain, wire
from protoship.config import Config
from protoship.errors import PipelineError

PB2_MODULE = re.compile(r"^(?P<stem>.*)_pb2(?P<grpc>_grpc)?\.pyi?$")

# buf.alpha.image.v1.ImageFile.buf_extension = 8042; ImageFileExtension.is_import = 1.
_BUF_EXTENSION_FIELD = 8042
_IS_IMPORT = b"\x08\x01"


@dataclass(frozen=True)
class ProtoFile:
    path: str
    package: str
    syntax: str
    edition: int
    dependencies: tuple[str, ...]
    has_services: bool
    # Top-level message names, in declaration order.
    messages: tuple[str, ...]
    # Language features some generators cannot handle (see inspect.LIMITATIONS).
    features: frozenset[str]
    # Distribution that provides this file's runtime modules; None for the module's own files.
    provider: str | None

    @property
    def python_module(self) -> str:
        """The protoc-generated module name, e.g. `acme.orders.v1.order_pb2`."""
        stem = self.path[: -len(".proto")]
        return stem.replace("-", "_").replace("/", ".") + "_pb2"


@dataclass(frozen=True)
class Image:
    path: Path
    digest: str
    files: tuple[ProtoFile, ...]
    imports: tuple[ProtoFile, ...]

    def sources_of(self, generated: str) -> list[ProtoFile]:
        """The proto files a generated file came from, by protoc's naming (`x_pb2*.py*` from
        `x.proto`) or else by package directory (betterproto's `a/b/__init__.py`)."""
        by_stem, by_package = self._index
        m = PB2_MODULE.match(generated)
        if m:
            return by_stem.get(m["stem"], [])
        package = ".".join(PurePosixPath(generated).parent.parts)
        return by_package.get(package, []) if package else []

    @functools.cached_property
    def _index(self) -> tuple[dict[str, list[ProtoFile]], dict[str, list[ProtoFile]]]:
        by_stem: dict[str, list[ProtoFile]] = {}
        by_package: dict[str, list[ProtoFile]] = {}
        for f in self.files + self.imports:
            by_stem.setdefault(f.path[: -len(".proto")].replace("-", "_"), []).append(f)
            by_package.setdefault(f.package, []).append(f)
        return by_stem, by_package

    def importers(self, paths: set[str]) -> dict[str, str]:
        """Module files that import any of `paths`, directly or not: {importer: what it imports}."""
        found: dict[str, str] = {}
        blocked = set(paths)
        changed = True
        while changed:
            changed = False
            for f in self.files:
                if f.path in blocked:
                    continue
                dep = next((d for d in f.dependencies if d in blocked), None)
                if dep is not None:
                    found[f.path] = dep
                    blocked.add(f.path)
                    changed = True
        return found

    @functools.cached_property
    def without_source_info(self) -> Path:
        """The image minus comments and source positions, for generators that never read
        them: a fraction of the size to decode."""
        fds = descriptor_pb2.FileDescriptorSet.FromString(self.path.read_bytes())
        for fd in fds.file:
            fd.ClearField("source_code_info")
        path = self.path.with_name("image-nosource.binpb")
        path.write_bytes(fds.SerializeToString(deterministic=True))
        return path

    def packages(self) -> dict[str, list[ProtoFile]]:
        result: dict[str, list[ProtoFile]] = {}
        for f in self.files:
            result.setdefault(f.package, []).append(f)
        return result


def discover(config: Config) -> list[str]:
    """The module's .proto files, module-relative and sorted, minus buf.yaml's excludes."""
    found = []
    for path in config.module.rglob("*.proto"):
        rel = path.relative_to(config.module).as_posix()
        if any(rel == e or rel.startswith(e + "/") for e in config.module_excludes):
            continue
        found.append(rel)
    if not found:
        raise PipelineError(
            f"{config.rel(config.module)}/: no .proto files found; put your buf module there "
            f"or change `modules: - path:` in {config.buf_yaml.name}"
        )
    return sorted(found)


def compile_image(config: Config, workdir: Path) -> Image:
    """Compile every module file into `workdir/image.binpb`, marked like a buf image."""
    sources = discover(config)
    raw = workdir / "protoc.binpb"
    include_args = ["-I."] + [f"-I{r.path}" for r in toolchain.include_roots()]
    # Paths on the command line are module-relative so protoc matches them to -I{module}.
    argfile = workdir / "protoc.args"
    argfile.write_text("\n".join(sources) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            *include_args,
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={raw}",
            f"@{argfile}",
        ],
        cwd=config.module,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise PipelineError(_compile_error(config, proc.stderr))
    fds = descriptor_pb2.FileDescriptorSet.FromString(raw.read_bytes())
    own = set(sources)
    files: list[ProtoFile] = []
    imports: list[ProtoFile] = []
    chunks: list[bytes] = []
    for fd in fds.file:
        is_import = fd.name not in own
        entry = ProtoFile(
            path=fd.name,
            package=fd.package,
            syntax=fd.syntax or "proto2",
            edition=fd.edition,
            dependencies=tuple(fd.dependency),
            has_services=bool(fd.service),
            messages=tuple(m.name for m in fd.message_type),
            features=_features(fd),
            provider=toolchain.provider_of(fd.name) if is_import else None,
        )
        (imports if is_import else files).append(entry)
        data = fd.SerializeToString(deterministic=True)
        if is_import:
            data += wire.length_delimited(_BUF_EXTENSION_FIELD, _IS_IMPORT)
        chunks.append(wire.length_delimited(1, data))
    image_bytes = b"".join(chunks)
    path = workdir / "image.binpb"
    path.write_bytes(image_bytes)
    return Image(
        path=path,
        digest=hashlib.sha256(image_bytes).hexdigest(),
        files=tuple(sorted(files, key=lambda f: f.path)),
        imports=tuple(sorted(imports, key=lambda f: f.path)),
    )


def _features(fd: descriptor_pb2.FileDescriptorProto) -> frozenset[str]:
    found: set[str] = set()
    if fd.syntax == "editions":
        found.add("editions")
    if any(keyword.iskeyword(name) for name in _declared_names(fd)):
        found.add("python-keywords")
    messages = list(fd.message_type)
    extensions = list(fd.extension)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        extensions.extend(message.extension)
        if message.extension_range:
            found.add("extension-ranges")
        if any(f.type == descriptor_pb2.FieldDescriptorProto.TYPE_GROUP for f in message.field):
            found.add("groups")
        if fd.syntax in ("", "proto2") and any(_explicit_scalar(f) for f in message.field):
            found.add("proto2-presence")
    for ext in extensions:
        # Extending google.protobuf.*Options declares custom options: they shape descriptors,
        # not messages. Extending anything else adds fields to a message.
        options = ext.extendee.startswith(".google.protobuf.") and ext.extendee.endswith("Options")
        found.add("custom-options" if options else "extensions")
    return frozenset(found)


def _declared_names(fd: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Every name the file declares that a generator may turn into a Python identifier."""
    names = fd.package.split(".")
    messages = list(fd.message_type)
    enums = list(fd.enum_type)
    while messages:
        message = messages.pop()
        names.append(message.name)
        names += [f.name for f in message.field] + [o.name for o in message.oneof_decl]
        messages += message.nested_type
        enums += message.enum_type
    for enum in enums:
        names.append(enum.name)
        names += [v.name for v in enum.value]
    for service in fd.service:
        names.append(service.name)
        names += [m.name for m in service.method]
    return names


def _explicit_scalar(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    """A proto2 `optional` scalar: presence is part of its value, and it may declare a default."""
    kinds = descriptor_pb2.FieldDescriptorProto
    return (
        field.label == kinds.LABEL_OPTIONAL
        and field.type not in (kinds.TYPE_MESSAGE, kinds.TYPE_GROUP)
        and not field.HasField("oneof_index")
    )


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a module-relative proto path matches a glob or names a directory prefix."""
    return any(
        fnmatch.fnmatchcase(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns
    )


_LOCATION = re.compile(r"^(?P<file>[^:\s][^:]*\.proto):(?P<rest>\d+:\d+:.*|.*)$")


def _compile_error(config: Config, stderr: str) -> str:
    """protoc's diagnostics with paths as the user sees them, plus what to do."""
    module = config.rel(config.module)
    lines = []
    for raw in stderr.strip().splitlines():
        m = _LOCATION.match(raw)
        line = raw
        if m and (config.module / m["file"]).is_file():
            line = f"{module}/{m['file']}:{m['rest'].lstrip()}"
        if "File not found" in line or "was not found or had errors" in line:
            line += (
                "  (imports resolve from the module, the well-known types, and "
                "googleapis-common-protos' .proto files)"
            )
        lines.append(line)
    return "compiling the proto module failed:\n" + "\n".join("  " + ln for ln in lines)

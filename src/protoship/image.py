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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from google.protobuf import descriptor_pb2

from protoship import toolchain, wire
from protoship.config import Config
from protoship.errors import PipelineError

PB2_MODULE = re.compile(r"^(?P<stem>.*)_pb2(?P<grpc>_grpc)?\.pyi?$")

# buf.alpha.image.v1.ImageFile.buf_extension = 8042; ImageFileExtension.is_import = 1.
_BUF_EXTENSION_FIELD = 8042
_IMPORT_MARK = wire.length_delimited(_BUF_EXTENSION_FIELD, b"\x08\x01")


@dataclass(frozen=True)
class ProtoFile:
    path: str
    package: str
    syntax: str
    edition: int
    dependencies: tuple[str, ...]
    # The dependencies imported with `import public`: their types are usable by importers.
    public_dependencies: tuple[str, ...]
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


# How much of the source info (comments, positions) an image variant keeps: "all", "services"
# (locations under a `service`, what gRPC stub generators turn into docstrings, and the
# comments on `syntax` and `package`, which become module docstrings) or "none".
SOURCE_INFO_LEVELS = ("all", "services", "none")
# How much of the imported module files a request carries (see Image.request).
IMPORT_LEVELS = ("all", "direct", "hollow")
_SERVICE_FIELD = 6  # FileDescriptorProto.service
_FILE_COMMENTS = (2, 12)  # FileDescriptorProto.package, .syntax


@dataclass(frozen=True)
class Image:
    path: Path
    digest: str
    files: tuple[ProtoFile, ...]
    imports: tuple[ProtoFile, ...]
    # {source info level: {file path: serialized FileDescriptorProto}}, in image order
    # (dependencies first); outside files carry buf's is_import mark.
    entries: dict[str, dict[str, bytes]] = field(default_factory=dict, repr=False, compare=False)

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

    @functools.cached_property
    def _by_path(self) -> dict[str, ProtoFile]:
        return {f.path: f for f in self.files + self.imports}

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

    def closure(self, paths: Iterable[str], *, direct: bool = False) -> set[str]:
        """`paths` and everything they import, directly or not; with `direct`, only what they
        import themselves (and what that re-exports with `import public`): every type they
        name is declared there."""
        found: set[str] = set()
        stack = list(paths)
        if direct:
            found.update(stack)
            stack = [d for path in stack for d in self._by_path[path].dependencies]
        while stack:
            path = stack.pop()
            if path not in found:
                found.add(path)
                dependency = self._by_path[path]
                stack.extend(dependency.public_dependencies if direct else dependency.dependencies)
        return found

    def size(self, paths: Iterable[str], source_info: str = "all") -> int:
        """Serialized size of the files' descriptors at that source info level."""
        entries = self.entries[source_info]
        return sum(len(entries[p]) for p in paths)

    def request(
        self,
        targets: Iterable[str],
        *,
        source_info: str = "all",
        imports: str = "all",
        scope: Iterable[str] = (),
    ) -> bytes:
        """An image for one generator run: `targets` and what they import, plus the outside
        files that anything in `scope` imports; every file but the targets is marked as an
        import, so `buf generate` generates the targets and only reads the rest.

        `imports` (see IMPORT_LEVELS) is how much of the imported module files: "all" (what
        protoc hands a plugin), "direct" (only the files the targets import themselves, plus
        what those re-export with `import public`: every type the targets name is declared
        there; without comments), or "hollow" (those, reduced to names: no services, and
        fields that name no other types, so nothing they import is needed).

        `scope` is for generators that write one module per package whatever they are asked
        for (betterproto2 writes `google/protobuf/__init__.py` from every well-known type in
        the request): every part of a split tree then writes the same outside modules."""
        wanted = set(targets)
        outside = {f.path for f in self.imports}
        include = self.closure(wanted, direct=imports != "all")
        # Outside files are never hollowed: what they import comes along, in full.
        include |= self.closure(include & outside) | (self.closure(scope) & outside)
        entries = self.entries[source_info]
        # Module files that are only imported come without comments when the generator reads
        # only some of the imports: such generators look up their own files' comments alone.
        bare = self.entries["none"] if imports != "all" else entries
        chunks = []
        for path, data in entries.items():
            if path not in include:
                continue
            if path in wanted or path in outside:
                chunks.append(wire.length_delimited(1, data))
            else:
                body = _hollow(data) if imports == "hollow" else bare[path]
                chunks.append(wire.length_delimited(1, body + _IMPORT_MARK))
        return b"".join(chunks)

    def packages(self) -> dict[str, list[ProtoFile]]:
        result: dict[str, list[ProtoFile]] = {}
        for f in self.files:
            result.setdefault(f.package, []).append(f)
        return result


@functools.lru_cache(maxsize=4096)
def _hollow(data: bytes) -> bytes:
    """A file's descriptor reduced to its names: messages keep their fields (names, numbers,
    scalar types) but a field of a message or enum type becomes an int32, and services,
    extensions and comments go."""
    kinds = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto.FromString(data)
    for name in ("service", "extension", "source_code_info"):
        fd.ClearField(name)
    # Present but empty: generators that look comments up find none, rather than no table.
    fd.source_code_info.SetInParent()
    messages = list(fd.message_type)
    while messages:
        message = messages.pop()
        message.ClearField("extension")
        for field_ in message.field:
            if field_.type in (kinds.TYPE_MESSAGE, kinds.TYPE_ENUM, kinds.TYPE_GROUP):
                field_.type = kinds.TYPE_INT32
                field_.ClearField("type_name")
                field_.ClearField("default_value")
        messages.extend(message.nested_type)
    return fd.SerializeToString(deterministic=True)


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
    entries: dict[str, dict[str, bytes]] = {level: {} for level in SOURCE_INFO_LEVELS}
    for fd in fds.file:
        is_import = fd.name not in own
        entry = ProtoFile(
            path=fd.name,
            package=fd.package,
            syntax=fd.syntax or "proto2",
            edition=fd.edition,
            dependencies=tuple(fd.dependency),
            public_dependencies=tuple(fd.dependency[i] for i in fd.public_dependency),
            has_services=bool(fd.service),
            messages=tuple(m.name for m in fd.message_type),
            features=_features(fd),
            provider=toolchain.provider_of(fd.name) if is_import else None,
        )
        (imports if is_import else files).append(entry)
        mark = _IMPORT_MARK if is_import else b""
        entries["all"][fd.name] = fd.SerializeToString(deterministic=True) + mark
        services = descriptor_pb2.SourceCodeInfo(location=_service_locations(fd))
        fd.ClearField("source_code_info")
        entries["none"][fd.name] = fd.SerializeToString(deterministic=True) + mark
        if services.location:
            fd.source_code_info.CopyFrom(services)
            entries["services"][fd.name] = fd.SerializeToString(deterministic=True) + mark
        else:
            entries["services"][fd.name] = entries["none"][fd.name]
    image_bytes = b"".join(wire.length_delimited(1, data) for data in entries["all"].values())
    path = workdir / "image.binpb"
    path.write_bytes(image_bytes)
    return Image(
        path=path,
        digest=hashlib.sha256(image_bytes).hexdigest(),
        files=tuple(sorted(files, key=lambda f: f.path)),
        imports=tuple(sorted(imports, key=lambda f: f.path)),
        entries=entries,
    )


def _service_locations(
    fd: descriptor_pb2.FileDescriptorProto,
) -> list[descriptor_pb2.SourceCodeInfo.Location]:
    """Source locations of services (and their methods), and of `package` and `syntax`."""
    found = []
    for location in fd.source_code_info.location:
        path = location.path
        if not path:
            continue
        first = path[0]
        if first == _SERVICE_FIELD or (first in _FILE_COMMENTS and len(path) == 1):
            found.append(location)
    return found


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

"""`protoc-gen-python_betterproto2_fast`: the betterproto2 generator, minus its slow parts.

The stock plugin (betterproto2-compiler 0.10.1) spends most of its time outside code
generation proper: it decodes the request with betterproto2's pure-Python runtime (source
info of every file included), looks each comment up by scanning every source location,
recompiles its Jinja templates for every output module and runs ruff twice per module.
This plugin keeps the stock parser, models and templates -- so the output stays
byte-identical -- and swaps only those parts:

* the request is decoded by the C protobuf runtime and converted field by field into the
  betterproto2 classes the models expect, leaving ``source_code_info`` out;
* comments come from an index built once per file, formatted by the stock function;
* templates are compiled once and rendered on every core (forked workers);
* ruff runs once (check, then format) over all modules, from the caller's working
  directory so that it picks up the same configuration as the stock plugin's stdin runs.

Whenever the fast path hits anything unexpected (ruff failing, an option that needs the
exact betterproto2 decoding) it falls back to the stock code path, so errors and edge cases
behave exactly like ``protoc-gen-python_betterproto2``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import betterproto2
import jinja2
from betterproto2_compiler.compile import importing
from betterproto2_compiler.lib.google.protobuf import FileDescriptorProto
from betterproto2_compiler.lib.google.protobuf.compiler import CodeGeneratorRequest
from betterproto2_compiler.plugin import compiler, models, parser
from betterproto2_compiler.plugin.module_validation import ModuleValidator
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from google.protobuf.message import Message as UpbMessage

__all__ = ["main"]

# The overrides below reach into betterproto2-compiler's internals (module-level names,
# template files, ruff arguments), so they are only valid for this exact release.
PINNED_COMPILER_VERSION = "0.10.1"
_RUFF_CHECK_ARGS = ("check", "--select", "I,F401,TC005,RUF022", "--fix", "--silent")
_PLACEHOLDER_PREFIX = "\x00protoship-pending-module:"
# Set by protoship when its own plugin runs already use every core (generate.PROCESSES_ENV).
_PROCESSES_ENV = "PROTOSHIP_PLUGIN_PROCESSES"
# Set by protoship to a file naming packages whose modules it discards (generate.DISCARD_ENV).
_DISCARD_ENV = "PROTOSHIP_PLUGIN_DISCARD"
# Below this many modules a forked worker costs more than it saves.
_MIN_MODULES_PER_WORKER = 4


class CompilerVersionError(RuntimeError):
    """The installed betterproto2-compiler is not the release these overrides target."""


def _check_compiler_version() -> None:
    try:
        installed = metadata.version("betterproto2_compiler")
    except metadata.PackageNotFoundError:
        installed = "not installed"
    if installed != PINNED_COMPILER_VERSION:
        raise CompilerVersionError(
            "protoc-gen-python_betterproto2_fast patches betterproto2-compiler internals and "
            f"supports only betterproto2-compiler=={PINNED_COMPILER_VERSION}, found "
            f"{installed}; pin it, or use the stock protoc-gen-python_betterproto2 plugin"
        )


# --- request decoding ----------------------------------------------------------------------

_KIND_SCALAR, _KIND_ENUM, _KIND_MESSAGE, _KIND_REPEATED_SCALAR = range(4)
_KIND_REPEATED_ENUM, _KIND_REPEATED_MESSAGE, _KIND_SKIP = range(4, 7)


@dataclass(frozen=True)
class _Plan:
    """How to build one betterproto2 class from the matching upb message."""

    defaults: dict[str, Any]
    lists: tuple[str, ...]
    actions: dict[int, tuple[str, int, Any]]


class _Converter:
    """Builds betterproto2 descriptor objects from C-decoded protobuf messages.

    betterproto2 messages are plain dataclasses whose every field has a default factory, so
    filling ``__dict__`` directly yields the same object as ``cls.parse`` on the same bytes
    (compared with ``==`` and ``repr``), at a fraction of the cost. Unknown fields (custom
    options) are not carried over; they only matter when descriptors are re-serialised,
    which is why the ``google_protobuf_descriptors`` option takes the exact path instead.
    """

    def __init__(self, skip: dict[type[Any], frozenset[str]]) -> None:
        self._skip = skip
        self._plans: dict[type[Any], _Plan] = {}

    def _plan(self, cls: type[Any]) -> _Plan:
        meta = cls._betterproto
        skipped = self._skip.get(cls, frozenset())
        defaults: dict[str, Any] = {}
        lists: list[str] = []
        actions: dict[int, tuple[str, int, Any]] = {}
        for name, field_meta in meta.meta_by_field_name.items():
            if field_meta.proto_type == betterproto2.TYPE_MAP or field_meta.unwrap is not None:
                # descriptor.proto has neither; a future one would need real handling.
                raise NotImplementedError(f"{cls.__name__}.{name}: unsupported field shape")
            if field_meta.repeated:
                lists.append(name)
            else:
                defaults[name] = meta.default_gen[name]()
            sub = meta.cls_by_field[name]
            if name in skipped:
                kind = _KIND_SKIP
            elif field_meta.proto_type == betterproto2.TYPE_MESSAGE:
                kind = _KIND_REPEATED_MESSAGE if field_meta.repeated else _KIND_MESSAGE
            elif field_meta.proto_type == betterproto2.TYPE_ENUM:
                kind = _KIND_REPEATED_ENUM if field_meta.repeated else _KIND_ENUM
            else:
                kind = _KIND_REPEATED_SCALAR if field_meta.repeated else _KIND_SCALAR
            actions[field_meta.number] = (name, kind, sub)
        defaults["_unknown_fields"] = b""
        plan = _Plan(defaults=defaults, lists=tuple(lists), actions=actions)
        self._plans[cls] = plan
        return plan

    def convert(self, message: UpbMessage, cls: type[Any]) -> Any:
        plan = self._plans.get(cls) or self._plan(cls)
        obj = object.__new__(cls)
        values = obj.__dict__
        values.update(plan.defaults)
        for name in plan.lists:
            values[name] = []
        actions = plan.actions
        # ListFields returns only the fields that are set, which for descriptors is a
        # small fraction of the declared ones; unset fields keep betterproto2's defaults.
        for descriptor, value in message.ListFields():
            action = actions.get(descriptor.number)
            if action is None:
                continue  # extensions and fields betterproto2 does not know
            name, kind, sub = action
            if kind == _KIND_SCALAR:
                values[name] = value
            elif kind == _KIND_REPEATED_MESSAGE:
                convert = self.convert
                values[name] = [convert(item, sub) for item in value]
            elif kind == _KIND_MESSAGE:
                values[name] = self.convert(value, sub)
            elif kind == _KIND_ENUM:
                values[name] = sub(value)
            elif kind == _KIND_REPEATED_SCALAR:
                values[name] = list(value)
            elif kind == _KIND_REPEATED_ENUM:
                values[name] = [sub(item) for item in value]
        return obj


@dataclass
class _Decoded:
    request: Any  # betterproto2 CodeGeneratorRequest
    # id() of each betterproto2 FileDescriptorProto -> its C-decoded source info.
    source_info: dict[int, Any] = field(default_factory=dict)


def _decode_request(data: bytes) -> _Decoded:
    upb_request = plugin_pb2.CodeGeneratorRequest.FromString(data)
    options = upb_request.parameter.split(",") if upb_request.parameter else []
    # Embedded descriptors are re-serialised from the betterproto2 objects, unknown fields
    # included, so only betterproto2's own decoder reproduces them byte for byte.
    exact = "google_protobuf_descriptors" in options
    converter = _Converter(
        {
            FileDescriptorProto: frozenset({"source_code_info"}),
            # Converted file by file below; the stock generator never reads the others.
            CodeGeneratorRequest: frozenset({"proto_file", "source_file_descriptors"}),
        }
    )
    request = converter.convert(upb_request, CodeGeneratorRequest)
    source_info: dict[int, Any] = {}
    for upb_file in upb_request.proto_file:
        if exact:
            stripped = descriptor_pb2.FileDescriptorProto()
            stripped.CopyFrom(upb_file)
            stripped.ClearField("source_code_info")
            bp_file = FileDescriptorProto.parse(stripped.SerializeToString())
        else:
            bp_file = converter.convert(upb_file, FileDescriptorProto)
        if upb_file.HasField("source_code_info"):
            source_info[id(bp_file)] = upb_file.source_code_info
        request.proto_file.append(bp_file)
    return _Decoded(request=request, source_info=source_info)


# --- comments ------------------------------------------------------------------------------


@dataclass
class _OneLocation:
    """Quacks like a FileDescriptorProto whose source info holds a single location."""

    location: list[Any]

    @property
    def source_code_info(self) -> _OneLocation:
        return self


class _CommentIndex:
    """Per-file comment lookup, built on first use; formatting is the stock function's."""

    def __init__(self, source_info: dict[int, Any], stock_get_comment: Callable[..., str]):
        self._source_info = source_info
        self._stock = stock_get_comment
        self._by_file: dict[int, dict[tuple[int, ...], Any]] = {}
        self._formatted: dict[tuple[int, tuple[int, ...]], str] = {}

    def get_comment(self, proto_file: Any, path: list[int]) -> str:
        file_id = id(proto_file)
        info = self._source_info.get(file_id)
        if info is None:
            # No source info: let the stock function fail (or not) exactly as it would.
            return self._stock(proto_file=proto_file, path=path)
        key = tuple(path)
        if len(key) % 2:
            return self._stock(_OneLocation(list(info.location)), list(path))
        cached = self._formatted.get((file_id, key))
        if cached is not None:
            return cached
        locations = self._by_file.get(file_id)
        if locations is None:
            locations = {}
            for location in info.location:
                location_path = location.path
                # Elements (the only things commented) have even-length paths; skipping
                # the rest halves the cost. The stock lookup stops at the first match.
                if not len(location_path) % 2:
                    locations.setdefault(tuple(location_path), location)
            self._by_file[file_id] = locations
        location = locations.get(key)
        comment = "" if location is None else self._stock(_OneLocation([location]), list(path))
        self._formatted[(file_id, key)] = comment
        return comment


# --- rendering -----------------------------------------------------------------------------


class _Renderer:
    """The stock ``outputfile_compiler`` up to (not including) ruff, with one Jinja env."""

    def __init__(self) -> None:
        templates = Path(compiler.__file__).resolve().parent.parent / "templates"
        self._version = metadata.version("betterproto2_compiler")
        self._all: list[str] = []
        env = jinja2.Environment(
            trim_blocks=True,
            lstrip_blocks=True,
            loader=jinja2.FileSystemLoader(str(templates)),
            undefined=jinja2.StrictUndefined,
        )
        env.filters["add_to_all"] = self._add_to_all
        self._body = env.get_template("template.py.j2")
        self._header = env.get_template("header.py.j2")

    def _add_to_all(self, name: str) -> str:
        self._all.append(name)
        return name

    def render(self, output_file: Any) -> str:
        self._all = []
        code: str = self._body.render(output_file=output_file)
        header: str = self._header.render(
            output_file=output_file, version=self._version, all=self._all
        )
        return header + "\n" + code


@dataclass
class _Work:
    renderer: _Renderer
    modules: Sequence[Any]
    directory: Path


# Filled before forking so that workers inherit the models instead of receiving them pickled.
_WORK: list[_Work] = []


def _module_path(directory: Path, index: int) -> Path:
    # Not __init__.py: ruff treats unused imports there differently than in stdin input.
    return directory / f"module_{index:06d}.py"


def _render_one(index: int) -> None:
    work = _WORK[0]
    code = work.renderer.render(work.modules[index])
    # newline="" because the stock plugin hands ruff the text untranslated.
    with _module_path(work.directory, index).open("w", encoding="utf-8", newline="") as handle:
        handle.write(code)


def _read_back(path: Path) -> str:
    # Universal newlines, as the stock plugin reads ruff's stdout in text mode.
    with path.open(encoding="utf-8") as handle:
        return handle.read()


def _collision_warning(code: str) -> str | None:
    validator = ModuleValidator(iter(code.splitlines()))
    if validator.validate():
        return None
    message_builder = ["[WARNING]: Generated code has collisions in the module:"]
    for collision, lines in validator.collisions.items():
        message_builder.append(f'  "{collision}" on lines:')
        for num, line in lines:
            message_builder.append(f"    {num}:{line}")
    return "\n".join(message_builder)


def _finish_one(index: int) -> tuple[str, str | None]:
    code = _read_back(_module_path(_WORK[0].directory, index))
    return code, _collision_warning(code)


def _weight(output_file: Any) -> int:
    return sum(len(message.fields) + 1 for message in output_file.messages.values()) + sum(
        4 * len(service.methods) for service in output_file.services.values()
    )


def _scratch_directory() -> tempfile.TemporaryDirectory[str]:
    """Where modules are written for ruff: under the working directory when possible.

    The stock plugin pipes each module through `ruff -`, so ruff takes its configuration from
    the working directory. For files, ruff looks beside the file instead; keeping them below
    the working directory makes both find the same configuration."""
    try:
        return tempfile.TemporaryDirectory(prefix=".protoship-bp2-", dir=Path.cwd())
    except OSError:
        return tempfile.TemporaryDirectory(prefix="protoship-bp2-")


def _run_ruff(paths: Sequence[Path]) -> None:
    files = [str(path) for path in paths]
    # Same arguments as the stock plugin's stdin runs, from the same working directory, so
    # the same ruff configuration applies. --no-cache keeps ruff from writing a
    # .ruff_cache into the caller's directory.
    # ruff must not write to our stdout, which carries the response.
    subprocess.run(
        ["ruff", *_RUFF_CHECK_ARGS, "--no-cache", *files], stdout=subprocess.DEVNULL, check=True
    )
    for path in paths:
        raw = path.read_bytes()
        if b"\r" in raw:
            # The stock plugin reads `ruff check` output through a text-mode pipe, which
            # translates newlines before `ruff format` sees the code.
            path.write_text(_read_back(path), encoding="utf-8", newline="")
    subprocess.run(
        ["ruff", "format", "--no-cache", "--silent", *files], stdout=subprocess.DEVNULL, check=True
    )


@contextlib.contextmanager
def _memoized_naming(request: Any) -> Iterator[None]:
    """Cache the pure name-mangling helpers the templates call for every field.

    Type references are resolved against the request's packages, which are complete
    before rendering starts and never change during it.
    """
    resolved: dict[str, tuple[str, str]] = {}
    parse_source_type_name = importing.parse_source_type_name

    def cached_parse(field_type_name: str, plugin_request: Any) -> tuple[str, str]:
        if plugin_request is not request:
            return parse_source_type_name(field_type_name, plugin_request)
        answer = resolved.get(field_type_name)
        if answer is None:
            answer = resolved[field_type_name] = parse_source_type_name(
                field_type_name, plugin_request
            )
        return answer

    with contextlib.ExitStack() as stack:
        for module, name in (
            (models, "pythonize_class_name"),
            (models, "pythonize_field_name"),
            (models, "pythonize_method_name"),
            (importing, "pythonize_class_name"),
            (importing, "safe_snake_case"),
        ):
            stack.enter_context(_patched(module, name, functools.cache(getattr(module, name))))
        stack.enter_context(_patched(models, "parse_source_type_name", cached_parse))
        stack.enter_context(_patched(importing, "parse_source_type_name", cached_parse))
        yield


def _processes() -> int:
    """Processes to render with: every core, unless the caller (protoship, running several
    plugin runs side by side) says how many."""
    try:
        return max(1, int(os.environ[_PROCESSES_ENV]))
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def _discarded_packages() -> frozenset[str]:
    """Proto packages whose modules the caller will throw away (protoship, running a plugin on
    one part of a tree, gives it the packages that part imports so that their type names
    resolve; their modules come from the part that holds them). Not rendered: empty."""
    listing = os.environ.get(_DISCARD_ENV)
    if not listing:
        return frozenset()
    return frozenset(Path(listing).read_text(encoding="utf-8").split())


def _finish_modules(modules: Sequence[Any], request: Any) -> list[tuple[str, str | None]]:
    """Render, format and validate every module; returns (code, collision warning)."""
    workers = min(_processes(), len(modules) // _MIN_MODULES_PER_WORKER)
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(_scratch_directory()))
        stack.enter_context(_memoized_naming(request))
        _WORK.append(_Work(_Renderer(), modules, directory))
        stack.callback(_WORK.clear)
        indices = range(len(modules))
        paths = [_module_path(directory, index) for index in indices]
        if workers < 2:
            for index in indices:
                _render_one(index)
            _run_ruff(paths)
            return [_finish_one(index) for index in indices]
        # Workers are forked with the models in place; gc.freeze keeps their collector from
        # touching (and so copying) the parent's heap page by page.
        gc.freeze()
        pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
        # Biggest first so that no worker is left with a large module at the end.
        order = sorted(indices, key=lambda i: -_weight(modules[i]))
        for _ in pool.imap_unordered(_render_one, order, chunksize=1):
            pass
        _run_ruff(paths)
        return pool.map(_finish_one, indices, chunksize=max(1, len(modules) // (4 * workers)))


# --- orchestration -------------------------------------------------------------------------


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def _generate(data: bytes) -> Any:
    decoded = _decode_request(data)
    comments = _CommentIndex(decoded.source_info, models.get_comment)
    pending: list[Any] = []
    discarded = _discarded_packages()

    def defer(output_file: Any) -> str:
        if output_file.package_proto_obj.package in discarded:
            return ""
        pending.append(output_file)
        return f"{_PLACEHOLDER_PREFIX}{len(pending) - 1}"

    with _patched(models, "get_comment", comments.get_comment):
        stderr = io.StringIO()
        try:
            with _patched(parser, "outputfile_compiler", defer), contextlib.redirect_stderr(stderr):
                response = parser.generate_code(decoded.request)
            finished = _finish_modules(pending, decoded.request)
        except Exception:
            # Replay through the stock code path (fresh models, stock rendering and ruff
            # calls) so that failures surface exactly as the stock plugin reports them.
            return parser.generate_code(decoded.request)
    for _, warning in finished:
        if warning is not None:
            print(warning, file=sys.stderr)
    sys.stderr.write(stderr.getvalue())
    for response_file in response.file:
        content = response_file.content
        if content is not None and content.startswith(_PLACEHOLDER_PREFIX):
            response_file.content = finished[int(content[len(_PLACEHOLDER_PREFIX) :])][0]
    return response


def main() -> None:
    """Read a CodeGeneratorRequest on stdin, write the CodeGeneratorResponse on stdout."""
    try:
        _check_compiler_version()
    except CompilerVersionError as error:
        print(f"protoc-gen-python_betterproto2_fast: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    # A one-shot process whose heap is mostly long-lived descriptors and models: cyclic
    # garbage is rare, and collections over that heap cost seconds on large requests.
    gc.disable()
    data = sys.stdin.buffer.read()
    dump_file = os.getenv("BETTERPROTO_DUMP")
    if dump_file:
        # The stock plugin's debugging aid; the raw request replays just the same.
        sys.stderr.write(f"\033[31mWriting input from protoc to: {dump_file}\033[0m\n")
        Path(dump_file).write_bytes(data)
    response = _generate(data)
    sys.stdout.buffer.write(response.SerializeToString())
    sys.stdout.flush()
    sys.stderr.flush()
    # Tearing down a heap of this size object by object takes seconds and achieves nothing.
    os._exit(0)


if __name__ == "__main__":
    main()

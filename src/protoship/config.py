"""Load the pipeline's configuration: [tool.protoship] in pyproject.toml, buf.yaml, buf.gen.yaml.

Everything downstream receives frozen dataclasses from here, so each fact is read once from the
file that owns it: names and version from pyproject.toml, the proto module from buf.yaml, the
generators from buf.gen.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import tomlkit
import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from tomlkit.exceptions import ParseError

from protoship.errors import PipelineError

Layout = Literal["proto-native", "import-root"]
_LAYOUTS: tuple[Layout, ...] = ("proto-native", "import-root")
_DIST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Plugin:
    """One entry of buf.gen.yaml's `plugins`, as written there."""

    spec: Mapping[str, Any]
    line: int

    @property
    def label(self) -> str:
        for key in ("local", "remote"):
            if key in self.spec:
                value = self.spec[key]
                return " ".join(value) if isinstance(value, list) else str(value)
        return f"protoc builtin {self.spec.get('protoc_builtin')}"

    @property
    def out(self) -> PurePosixPath:
        return PurePosixPath(str(self.spec["out"]))


@dataclass(frozen=True)
class Flavour:
    """A family of generated code shipped as one distribution."""

    key: str
    layout: Layout
    distribution: str
    summary: str
    plugins: tuple[Plugin, ...]
    # Set for layout "import-root": the top-level Python package that holds all the output.
    import_root: str | None = None
    # proto paths (module-relative globs) left out of this flavour on purpose.
    exclude: tuple[str, ...] = ()

    @property
    def extra(self) -> str:
        return self.key


@dataclass(frozen=True)
class Config:
    root: Path
    name: str
    version: str
    description: str
    output: Path
    module: Path
    module_excludes: tuple[str, ...]
    buf_yaml: Path
    buf_gen_yaml: Path
    flavours: tuple[Flavour, ...]
    # The raw [tool.protoship] table, part of the fingerprint.
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    def rel(self, path: Path) -> str:
        """A path as the user sees it: relative to the project root where possible."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


def load(root: Path) -> Config:
    """Read and validate the configuration of the project at `root`."""
    root = root.resolve()
    pyproject = root / "pyproject.toml"
    table = _tool_table(pyproject)
    where = "pyproject.toml [tool.protoship]"

    name = _string(table, "name", where)
    if not _DIST_NAME.match(name):
        raise PipelineError(
            f"{where}: name {name!r} is not a valid distribution name "
            "(letters, digits, '.', '-' and '_'; e.g. \"acme-protos\")"
        )
    name = canonicalize_name(name)
    version = _string(table, "version", where)
    try:
        Version(version)
    except InvalidVersion:
        raise PipelineError(
            f'{where}: version {version!r} is not a PEP 440 version (e.g. "1.2.0")'
        ) from None
    description = str(table.get("description", f"Generated Python packages for {name}"))
    output = root / str(table.get("output", "packages"))

    buf_yaml = root / "buf.yaml"
    module, module_excludes = _buf_module(root, buf_yaml)
    buf_gen_yaml = root / "buf.gen.yaml"
    plugins = _buf_gen_plugins(buf_gen_yaml)
    flavours = _flavours(name, table.get("flavours", {}), plugins, buf_gen_yaml)
    return Config(
        root=root,
        name=name,
        version=version,
        description=description,
        output=output,
        module=module,
        module_excludes=module_excludes,
        buf_yaml=buf_yaml,
        buf_gen_yaml=buf_gen_yaml,
        flavours=flavours,
        raw=table,
    )


def _tool_table(pyproject: Path) -> dict[str, Any]:
    if not pyproject.is_file():
        raise PipelineError(f"{pyproject}: not found; run protoship from the project root")
    try:
        data = tomlkit.parse(pyproject.read_text(encoding="utf-8")).unwrap()
    except ParseError as exc:
        raise PipelineError(f"{pyproject.name}: invalid TOML: {exc}") from None
    table = data.get("tool", {}).get("protoship")
    if not isinstance(table, dict):
        raise PipelineError(
            f"{pyproject.name}: no [tool.protoship] table; add one with at least "
            'name = "<org>-protos" and version = "0.1.0"'
        )
    return table


def _string(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise PipelineError(f"{where}: `{key}` must be a non-empty string")
    return value


def _load_yaml(path: Path) -> yaml.Node:
    if not path.is_file():
        raise PipelineError(f"{path.name}: not found next to pyproject.toml")
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PipelineError(f"{path.name}{line}: invalid YAML: {exc}") from None
    if not isinstance(node, yaml.MappingNode):
        raise PipelineError(f"{path.name}:1: expected a mapping with `version: v2`")
    return node


def _value(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _get(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            found: yaml.Node = v
            return found
    return None


def _check_v2(node: yaml.MappingNode, path: Path) -> None:
    version = _get(node, "version")
    if version is None or _value(version) != "v2":
        line = version.start_mark.line + 1 if version is not None else 1
        raise PipelineError(f"{path.name}:{line}: expected `version: v2` (buf configuration v2)")


def _buf_module(root: Path, buf_yaml: Path) -> tuple[Path, tuple[str, ...]]:
    node = _load_yaml(buf_yaml)
    assert isinstance(node, yaml.MappingNode)
    _check_v2(node, buf_yaml)
    modules = _get(node, "modules")
    if modules is None:
        return root, ()
    entries = _value(modules)
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise PipelineError(
            f"{buf_yaml.name}:{modules.start_mark.line + 1}: expected exactly one module "
            "(e.g. `modules: [{path: proto}]`); protoship packages one buf module"
        )
    module = root / str(entries[0].get("path", "."))
    if not module.is_dir():
        raise PipelineError(
            f"{buf_yaml.name}:{modules.start_mark.line + 1}: module path "
            f"{entries[0].get('path')!r} is not a directory"
        )
    excludes = tuple(str(e).rstrip("/") for e in entries[0].get("excludes", []) or [])
    return module, excludes


def _buf_gen_plugins(path: Path) -> tuple[Plugin, ...]:
    node = _load_yaml(path)
    assert isinstance(node, yaml.MappingNode)
    _check_v2(node, path)
    plugins = _get(node, "plugins")
    if not isinstance(plugins, yaml.SequenceNode) or not plugins.value:
        raise PipelineError(f"{path.name}: expected a non-empty `plugins:` list")
    result = []
    for item in plugins.value:
        line = item.start_mark.line + 1
        spec = _value(item)
        if not isinstance(spec, dict):
            raise PipelineError(f"{path.name}:{line}: a plugin must be a mapping")
        if not any(k in spec for k in ("local", "protoc_builtin", "remote")):
            raise PipelineError(f"{path.name}:{line}: a plugin needs `local:` or `protoc_builtin:`")
        if "remote" in spec:
            raise PipelineError(
                f"{path.name}:{line}: remote plugins need the Buf Schema Registry; use a local "
                "plugin installed from PyPI and pinned in pyproject.toml's `generate` group"
            )
        out = spec.get("out")
        if not isinstance(out, str) or not out or PurePosixPath(out).is_absolute():
            raise PipelineError(
                f"{path.name}:{line}: `out` must be a relative directory whose first segment "
                "names the flavour (e.g. `out: grpcio`)"
            )
        if PurePosixPath(out).parts[0] in ("..", "."):
            raise PipelineError(f"{path.name}:{line}: `out` must start with the flavour name")
        if len(PurePosixPath(out).parts) != 1:
            raise PipelineError(
                f"{path.name}:{line}: `out: {out}` must be just the flavour name; protoship "
                "decides where each flavour's files go inside its package"
            )
        result.append(Plugin(spec=spec, line=line))
    return tuple(result)


def _flavours(
    name: str, table: Any, plugins: tuple[Plugin, ...], buf_gen_yaml: Path
) -> tuple[Flavour, ...]:
    if not isinstance(table, dict):
        raise PipelineError("pyproject.toml [tool.protoship.flavours]: expected a table")
    by_key: dict[str, list[Plugin]] = {}
    for plugin in plugins:
        by_key.setdefault(plugin.out.parts[0], []).append(plugin)
    flavours = []
    for key, group in by_key.items():
        settings = table.get(key)
        where = f"pyproject.toml [tool.protoship.flavours.{key}]"
        if not isinstance(settings, dict):
            raise PipelineError(
                f"{buf_gen_yaml.name}:{group[0].line}: `out: {key}` names flavour {key!r}, "
                f"which {where.split(' ', 1)[1]} does not define; add that table with "
                'layout = "proto-native" or "import-root"'
            )
        layout = settings.get("layout")
        if layout not in _LAYOUTS:
            raise PipelineError(f"{where}: layout must be one of {', '.join(_LAYOUTS)}")
        distribution = canonicalize_name(str(settings.get("distribution", f"{name}-{key}")))
        import_root = None
        if layout == "import-root":
            import_root = str(settings.get("import_root", distribution.replace("-", "_")))
            if not _IDENTIFIER.match(import_root):
                raise PipelineError(f"{where}: import_root {import_root!r} is not an identifier")
        exclude = settings.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise PipelineError(f"{where}: exclude must be a list of proto path globs")
        flavours.append(
            Flavour(
                key=key,
                layout=layout,
                distribution=distribution,
                summary=str(settings.get("summary", f"{key} flavour")),
                plugins=tuple(group),
                import_root=import_root,
                exclude=tuple(exclude),
            )
        )
    unused = sorted(set(table) - set(by_key))
    if unused:
        raise PipelineError(
            f"pyproject.toml [tool.protoship.flavours.{unused[0]}]: no plugin in "
            f"{buf_gen_yaml.name} has `out: {unused[0]}`; remove the table or add the plugins"
        )
    if len({f.distribution for f in flavours} | {name}) != len(flavours) + 1:
        raise PipelineError("pyproject.toml [tool.protoship]: distribution names must differ")
    return tuple(flavours)

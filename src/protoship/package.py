"""Lay generated files out as hatch-built distributions: one per flavour plus a meta package.

The result is a mapping of paths (relative to the output directory) to bytes; nothing is written
here, so the caller decides where the tree goes (a staging directory, a --check comparison).
Each package's pyproject.toml is merged with tomlkit into the one already in the output, so
keys and comments a user adds by hand survive regeneration.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import tomlkit
from tomlkit.items import Array, Table

from protoship import requirements
from protoship.config import Config, Flavour, Plugin
from protoship.errors import PipelineError
from protoship.generate import Generated
from protoship.image import PB2_MODULE, Image, ProtoFile

HATCHLING = "hatchling>=1.26"
# Schema identity, shipped in each wheel's .dist-info/extra_metadata/ and read at run time with
# importlib.metadata.distribution(name).read_text("extra_metadata/schema.json").
SCHEMA_FILE = "schema.json"
_PYPROJECT_HEADER = (
    "Managed by protoship (`nox -s generate`): the keys it writes (build-system, project name,\n"
    "version, description, dependencies, requires-python, hatch targets) are rewritten on every\n"
    "run. Keys and comments you add by hand are kept."
)


def build(
    config: Config,
    image: Image,
    generated: Mapping[str, list[Generated]],
    previous: Path | None,
    excluded: Mapping[str, Mapping[str, str]],
    *,
    ready: Mapping[str, dict[str, bytes]] | None = None,
) -> dict[str, bytes]:
    """The whole output tree: {path relative to the output dir: content}. `ready` holds the
    trees of flavours already packaged (flavour_tree, with the same arguments)."""
    tree: dict[str, bytes] = {}
    for flavour in config.flavours:
        done = (ready or {}).get(flavour.key)
        if done is None:
            done = flavour_tree(config, flavour, image, generated[flavour.key], previous, excluded)
        tree.update(done)
    meta = config.name
    tree[f"{meta}/pyproject.toml"] = _merge_pyproject(
        _previous(previous, f"{meta}/pyproject.toml"), _meta_pyproject(config)
    )
    tree[f"{meta}/README.md"] = _meta_readme(config).encode()
    return dict(sorted(tree.items()))


def flavour_tree(  # noqa: PLR0917 (the arguments of build, for one flavour)
    config: Config,
    flavour: Flavour,
    image: Image,
    files_generated: list[Generated],
    previous: Path | None,
    excluded: Mapping[str, Mapping[str, str]],
) -> dict[str, bytes]:
    """One flavour's distribution: {path relative to the output dir: content}."""
    files = _layout(config, flavour, image, files_generated)
    files.update(_protos(config, flavour, image))
    root = flavour.distribution
    package_roots = sorted({PurePosixPath(p).parts[1] for p in files})
    reqs = requirements.derive(
        (c for p, c in files.items() if p.endswith(".py")), _own_modules(files)
    )
    pyproject = _flavour_pyproject(config, flavour, package_roots, reqs)
    tree = {f"{root}/{p}": c for p, c in files.items()}
    tree[f"{root}/pyproject.toml"] = _merge_pyproject(
        _previous(previous, f"{root}/pyproject.toml"), pyproject
    )
    tree[f"{root}/README.md"] = _flavour_readme(
        config, flavour, image, reqs, excluded.get(flavour.key, {})
    ).encode()
    tree[f"{root}/{SCHEMA_FILE}"] = _schema(image, excluded.get(flavour.key, {}))
    return tree


def _own_modules(files: Mapping[str, bytes]) -> frozenset[str]:
    """Dotted names of every module and package directory under src/."""
    own: set[str] = set()
    for path in files:
        parts = PurePosixPath(path).parts[1:]
        if path.endswith((".py", ".pyi")):
            stem = PurePosixPath(*parts).with_suffix("").parts
            own.add(".".join(stem[:-1] if stem[-1] == "__init__" else stem))
        own.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return frozenset(own)


def _protos(config: Config, flavour: Flavour, image: Image) -> dict[str, bytes]:
    """The module's .proto sources, beside the generated modules, so that other repositories
    can import them from the installed package (as googleapis-common-protos does)."""
    prefix = "src" if flavour.import_root is None else f"src/{flavour.import_root}"
    return {f"{prefix}/{f.path}": (config.module / f.path).read_bytes() for f in image.files}


def _schema(image: Image, excluded: Mapping[str, str]) -> bytes:
    data = {
        "descriptor_set_sha256": image.digest,
        "files": [f.path for f in image.files],
        "excluded": dict(sorted(excluded.items())),
    }
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _previous(previous: Path | None, rel: str) -> str | None:
    if previous is None:
        return None
    path = previous / rel
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _layout(
    config: Config, flavour: Flavour, image: Image, files: list[Generated]
) -> dict[str, bytes]:
    """Flavour files under `src/`, with headers, py.typed markers and service-less gRPC
    modules dropped."""
    prefix = "src" if flavour.import_root is None else f"src/{flavour.import_root}"
    module = config.rel(config.module)
    out: dict[str, bytes] = {}
    for gen in files:
        sources = image.sources_of(gen.path)
        m = PB2_MODULE.match(gen.path)
        if (
            flavour.layout == "proto-native"
            and m
            and m["grpc"]
            and sources
            and not any(s.has_services for s in sources)
        ):
            # grpc_python writes a module for every file; one with no service only imports
            # grpc, which would make a runtime dependency out of nothing.
            continue
        content = gen.content
        if gen.path.endswith((".py", ".pyi")):
            content = _with_header(content, _header(module, gen.plugin, sources))
        out[f"{prefix}/{gen.path}"] = content
    module_dirs = {str(PurePosixPath(p).parent) for p in out if p.endswith((".py", ".pyi"))}
    if flavour.layout == "proto-native":
        # PEP 420 namespace packages throughout, as protoc lays them out, so that `google.*`
        # and any org-wide top-level package stay shareable with other distributions; PEP 561
        # then wants py.typed in each directory that holds modules.
        for directory in module_dirs:
            out.setdefault(f"{directory}/py.typed", b"")
    else:
        out.setdefault(f"{prefix}/py.typed", b"")
        if f"{prefix}/__init__.py" not in out:
            raise PipelineError(
                f"flavour {flavour.key!r} has layout import-root but its plugins wrote no "
                f'__init__.py at the output root; use layout = "proto-native"'
            )
    return out


_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=]")


def _with_header(content: bytes, header: str) -> bytes:
    """Prepend `header`, after a PEP 263 coding line so that it stays on line 1."""
    first, sep, rest = content.partition(b"\n")
    if _CODING.match(first):
        return first + sep + header.encode() + rest
    return header.encode() + content


def _header(module: str, plugin: Plugin, sources: list[ProtoFile]) -> str:
    """`module`: the buf module's directory as the user sees it."""
    if len(sources) == 1:
        src = sources[0]
        origin = f"{module}/{src.path}" if src.provider is None else f"{src.path} ({src.provider})"
    elif sources:
        origin = f"proto package {sources[0].package} ({len(sources)} files)"
    else:
        origin = f"the buf module in {module}/"
    return (
        f"# @generated by protoship from {origin} with {_plugin_name(plugin)}.\n"
        "# Do not edit: change the .proto files and run `nox -s generate`.\n"
    )


def _plugin_name(plugin: Plugin) -> str:
    return _describe_plugin(
        str(plugin.spec.get("local", "")), str(plugin.spec.get("protoc_builtin"))
    )


@functools.cache
def _describe_plugin(local: str, builtin: str) -> str:
    if local:
        for ep in metadata.entry_points(group="console_scripts", name=local):
            if ep.dist is not None:
                return f"{local} ({ep.dist.metadata['Name']} {ep.dist.version})"
        return local
    return f"protoc builtin {builtin} (grpcio-tools {metadata.version('grpcio-tools')})"


def _flavour_pyproject(
    config: Config,
    flavour: Flavour,
    package_roots: list[str],
    reqs: requirements.Requirements,
) -> dict[str, Any]:
    return {
        "build-system": {"requires": [HATCHLING], "build-backend": "hatchling.build"},
        "project": {
            "name": flavour.distribution,
            "version": config.version,
            "description": f"{config.description}: {flavour.summary}.",
            "readme": "README.md",
            "requires-python": reqs.requires_python,
            "dependencies": list(reqs.dependencies),
            "classifiers": ["Programming Language :: Python :: 3", "Typing :: Typed"],
        },
        "tool": {
            "hatch": {
                "build": {
                    "targets": {
                        "wheel": {
                            "packages": [f"src/{r}" for r in package_roots],
                            "extra-metadata": {SCHEMA_FILE: SCHEMA_FILE},
                        },
                        "sdist": {"include": ["/src", "/README.md", f"/{SCHEMA_FILE}"]},
                    }
                }
            }
        },
    }


def _meta_pyproject(config: Config) -> dict[str, Any]:
    return {
        "build-system": {"requires": [HATCHLING], "build-backend": "hatchling.build"},
        "project": {
            "name": config.name,
            "version": config.version,
            "description": (
                f"{config.description}. Choose a flavour with an extra: "
                + ", ".join(f"[{f.extra}]" for f in config.flavours)
                + "."
            ),
            "readme": "README.md",
            "requires-python": ">=3.10",
            "dependencies": [],
            "optional-dependencies": {
                f.extra: [f"{f.distribution}=={config.version}"] for f in config.flavours
            },
        },
        "tool": {
            "hatch": {
                "build": {
                    "targets": {
                        # A code-free distribution: its wheel holds only metadata.
                        "wheel": {"bypass-selection": True},
                        "sdist": {"include": ["/README.md"]},
                    }
                }
            }
        },
    }


def _merge_pyproject(existing: str | None, managed: dict[str, Any]) -> bytes:
    if existing is None:
        doc = tomlkit.document()
        for line in _PYPROJECT_HEADER.splitlines():
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    else:
        doc = tomlkit.parse(existing)
    _merge_table(doc, managed)
    return _tidy(tomlkit.dumps(doc)).encode()


def _tidy(text: str) -> str:
    """One blank line before each table header (none between a header and a comment above it),
    so a merged file is laid out exactly as a freshly written one and regeneration is stable."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("["):
            while out and not out[-1].strip():
                out.pop()
            if out and not out[-1].startswith("#"):
                out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def _merge_table(target: Any, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping):
            if key not in target or not isinstance(target[key], (Table, dict)):
                target[key] = tomlkit.table(is_super_table=_only_tables(value))
            _merge_table(target[key], value)
        else:
            target[key] = _item(value)


def _only_tables(value: Mapping[str, Any]) -> bool:
    return all(isinstance(v, Mapping) for v in value.values())


def _item(value: Any) -> Any:
    if isinstance(value, list) and len(value) > 1:
        array: Array = tomlkit.array()
        array.extend(value)
        return array.multiline(True)
    return value


def _example(image: Image, excluded: Mapping[str, str]) -> tuple[ProtoFile, str] | None:
    for f in image.files:
        if f.messages and f.path not in excluded:
            return f, f.messages[0]
    return None


def _flavour_readme(
    config: Config,
    flavour: Flavour,
    image: Image,
    reqs: requirements.Requirements,
    excluded: Mapping[str, str],
) -> str:
    lines = [
        f"# {flavour.distribution}",
        "",
        f"{config.description}: {flavour.summary}.",
        "",
        f"Generated by protoship from the buf module `{config.rel(config.module)}/` "
        f"({len(image.files) - len(excluded)} of {len(image.files)} files, "
        f"{len(image.packages())} proto packages). Do not edit; "
        "regenerate with `nox -s generate`.",
        "",
        "## Install",
        "",
        "```",
        f"pip install '{config.name}[{flavour.extra}]'",
        "```",
        "",
    ]
    example = _example(image, excluded)
    if example is not None:
        f, message = example
        lines += ["## Use", "", "```python"]
        if flavour.import_root is None:
            module, _, name = f.python_module.rpartition(".")
            lines.append(f"from {module} import {name}")
            lines.append(f"msg = {name}.{message}()")
            lines.append("data = msg.SerializeToString()")
        else:
            lines.append(f"from {flavour.import_root}.{f.package} import {message}")
            lines.append(f"msg = {message}()")
            lines.append("data = bytes(msg)")
        lines += ["```", ""]
    lines += ["## Runtime requirements", ""]
    lines += [f"- `{r}`" for r in reqs.dependencies] or ["- none"]
    lines += ["", f"Python {reqs.requires_python}.", ""]
    if excluded:
        lines += ["## Left out of this flavour", ""]
        lines += [f"- `{path}`: {why}" for path, why in sorted(excluded.items())]
        lines.append("")
    return "\n".join(lines)


def _meta_readme(config: Config) -> str:
    lines = [
        f"# {config.name}",
        "",
        f"{config.description}. This distribution has no code: pick a flavour with an extra.",
        "",
        "| extra | installs | what you get |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{f.extra}` | `{f.distribution}` | {f.summary} |" for f in config.flavours]
    lines += ["", "Each extra pins its flavour package to this package's exact version."]
    lines += [
        "",
        "```",
        f"pip install '{config.name}[{config.flavours[0].extra}]'",
        "```",
        "",
    ]
    return "\n".join(lines)

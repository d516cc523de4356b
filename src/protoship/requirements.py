"""Derive a package's runtime requirements from the code that was generated.

Nothing here is typed by hand: the imports at the top of each generated module say which
distributions it needs, and where generated code states the runtime it was made for (protobuf's
gencode version check, grpc's GRPC_GENERATED_VERSION, betterproto2's compiler version) that
statement sets the floor. Other floors come from what the imported distributions themselves
declare for each other, then from the version installed when the code was generated and checked.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

_IMPORT = re.compile(r"^(?:import\s+([\w.]+)|from\s+([\w.]+)\s+import\s+(\w+))", re.MULTILINE)


def _protobuf_floor(found: list[tuple[str, ...]]) -> str:
    major, minor, patch = max((int(a), int(b), int(c)) for a, b, c in found)
    return f">={major}.{minor}.{patch},<{major + 1}"


def _grpc_floor(found: list[tuple[str, ...]]) -> str:
    version = max(Version(v[0]) for v in found)
    return f">={version},<{version.major + 1}"


def _betterproto_floor(found: list[tuple[str, ...]]) -> str:
    # betterproto2.check_compiler_version accepts a library iff major.minor match the compiler.
    version = max(Version(v[0]) for v in found)
    return f">={version.major}.{version.minor}.0,<{version.major}.{version.minor + 1}"


@dataclass(frozen=True)
class _Marker:
    distribution: str
    pattern: re.Pattern[str]
    specifier: Callable[[list[tuple[str, ...]]], str]


# Statements generated code makes about the runtime it needs.
_MARKERS = (
    _Marker(
        "protobuf",
        re.compile(
            r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
            r"(\d+),\s*(\d+),\s*(\d+),"
        ),
        _protobuf_floor,
    ),
    _Marker("grpcio", re.compile(r"^GRPC_GENERATED_VERSION = '([^']+)'", re.M), _grpc_floor),
    _Marker(
        "betterproto2", re.compile(r'^_COMPILER_VERSION = "([^"]+)"', re.M), _betterproto_floor
    ),
)


@dataclass(frozen=True)
class Requirements:
    dependencies: tuple[str, ...]
    requires_python: str


def derive(modules: Iterable[bytes], own: frozenset[str]) -> Requirements:
    """Requirements of the given generated module sources (.py, not stubs).

    `own` holds the dotted names of the package's own modules and packages: imports of those
    need nothing. (Not top-level names: a package may share `google` with protobuf.)
    """
    imported: set[str] = set()
    marks: dict[str, list[tuple[str, ...]]] = {}
    for source in modules:
        text = source.decode("utf-8")
        for m in _IMPORT.finditer(text):
            name = m[1] or f"{m[2]}.{m[3]}"
            if name not in own and (m[1] or m[2] not in own):
                imported.add(name)
        for marker in _MARKERS:
            found = marker.pattern.findall(text)
            if found:
                marks.setdefault(marker.distribution, []).extend(
                    tuple(f) if isinstance(f, tuple) else (f,) for f in found
                )
    dists = sorted({d for name in imported if (d := _distribution_of(name)) is not None})
    declared = _declared_specifiers(dists)
    specs = []
    for dist in dists:
        stated = next((m for m in _MARKERS if m.distribution == dist), None)
        if stated is not None and dist in marks:
            spec = stated.specifier(marks[dist])
        elif dist in declared:
            spec = str(declared[dist])
        else:
            spec = f">={metadata.version(dist)}"
        specs.append(f"{dist}{','.join(sorted(str(s) for s in SpecifierSet(spec)))}")
    # Only floors stated by the generated code are tight enough to bound Python: for the rest,
    # the installed (newest) release may need a newer Python than the floor release does.
    return Requirements(tuple(specs), _requires_python(sorted(d for d in dists if d in marks)))


@functools.cache
def _distribution_files(dist: str) -> frozenset[str]:
    files = metadata.distribution(dist).files or ()
    return frozenset(str(f) for f in files)


@functools.cache
def _top_level_owners() -> dict[str, list[str]]:
    """{top-level import name: distributions with files under it}, from each RECORD.

    Not importlib.metadata.packages_distributions(): before Python 3.11 it reads only
    top_level.txt, which protobuf does not ship, so `google` looked like googleapis' alone."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        for file in dist.files or ():
            top = file.parts[0] if file.parts else ""
            if not top or top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
                continue
            owners.setdefault(top.removesuffix(".py"), set()).add(name)
    return {top: sorted(names) for top, names in owners.items()}


def _distribution_of(module: str) -> str | None:
    """The installed distribution that provides `module` (a dotted name), if any."""
    top = module.split(".", maxsplit=1)[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return None
    owners = _top_level_owners().get(top, [])
    parts = module.split("/") if "/" in module else module.split(".")
    # `from a.b import c` may name a module a/b/c.py or an attribute of a/b/__init__.py.
    candidates = []
    for depth in range(len(parts), 0, -1):
        stem = "/".join(parts[:depth])
        candidates += [f"{stem}.py", f"{stem}/__init__.py", f"{stem}/"]
    for candidate in candidates:
        for owner in owners:
            files = _distribution_files(owner)
            if candidate in files or (
                candidate.endswith("/") and any(f.startswith(candidate) for f in files)
            ):
                return canonicalize_name(metadata.metadata(owner)["Name"])
    return canonicalize_name(owners[0]) if len(owners) == 1 else None


def _declared_specifiers(dists: list[str]) -> dict[str, SpecifierSet]:
    """Specifiers that the required distributions declare for each other (any extra)."""
    found: dict[str, SpecifierSet] = {}
    wanted = set(dists)
    for dist in dists:
        for line in metadata.requires(dist) or ():
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name in wanted and req.specifier:
                found[name] = found.get(name, SpecifierSet()) & req.specifier
    return found


def _requires_python(dists: list[str]) -> str:
    """The highest `>=` floor that any required distribution sets for Python."""
    floor = Version("3.10")  # protoship's own floor: protobuf 7 (gencode 35.x) dropped 3.9
    for dist in dists:
        spec = (metadata.metadata(dist).get_all("Requires-Python") or [""])[0]
        for clause in SpecifierSet(spec or ""):
            if clause.operator in (">=", ">"):
                floor = max(floor, Version(clause.version))
    return f">={floor.major}.{floor.minor}"

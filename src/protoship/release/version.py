"""The one version: compute the next one and write it everywhere it is recorded.

The version lives in the root pyproject's [tool.protoship] and is copied by generation into each
package's [project].version and the meta package's `==` pins. A bump writes all of them (with
tomlkit, so formatting and comments stay), so that packages/
stays exactly what `nox -s generate` would write for the new version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from protoship import config as config_mod
from protoship import image, output
from protoship.config import Config
from protoship.errors import PipelineError
from protoship.release.changes import Level

LEVELS: tuple[Level, ...] = ("major", "minor", "patch")


def next_version(current: str, level: Level) -> str:
    """Semantic-version bump of the release segment (1.4.2 -> 2.0.0 / 1.5.0 / 1.4.3)."""
    major, minor, patch = (*Version(current).release, 0, 0)[:3]
    if level == "major":
        return f"{major + 1}.0.0"
    if level == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def resolve(current: str, target: str) -> str:
    """`target` is a level (major, minor, patch) or an explicit PEP 440 version."""
    if target in LEVELS:
        return next_version(current, target)
    try:
        return str(Version(target))
    except InvalidVersion:
        raise PipelineError(
            f"{target!r} is neither major, minor, patch nor a PEP 440 version (e.g. 1.3.0)"
        ) from None


def is_bump_of(version: str, base: Version, level: Level) -> bool:
    """Whether `version` is at least a `level` bump over the release `base`."""
    return Version(version) >= Version(next_version(str(base), level))


@dataclass(frozen=True)
class Written:
    old: str
    new: str
    files: tuple[Path, ...]


def write(config: Config, new: str) -> Written:
    """Set the version to `new` in the root pyproject and every package in the output dir."""
    old = config.version
    sources = image.discover(config)
    # Refresh the manifest only if packages/ was exactly what generation wrote: a bump must not
    # make a stale tree look fresh.
    was_fresh = output.up_to_date(config.output, output.fingerprint(config, sources))
    ours = {canonicalize_name(f.distribution) for f in config.flavours}
    files: list[Path] = []

    def update(path: Path, edit: Callable[[Any, Path], None]) -> None:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
        edit(doc, path)
        text = tomlkit.dumps(doc)
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            files.append(path)

    def root(doc: Any, path: Path) -> None:
        doc["tool"]["protoship"]["version"] = new

    def package(doc: Any, path: Path) -> None:
        project = doc.get("project")
        if project is None or "version" not in project:
            raise PipelineError(f"{config.rel(path)}: no [project] version to update")
        project["version"] = new
        for requirements in project.get("optional-dependencies", {}).values():
            for i, item in enumerate(requirements):
                requirements[i] = _repin(str(item), ours, new) or item

    update(config.pyproject, root)
    for name in [f.distribution for f in config.flavours] + [config.name]:
        pyproject = config.output / name / "pyproject.toml"
        # A package not generated yet gets the new version from generation.
        if pyproject.is_file():
            update(pyproject, package)
    if was_fresh:
        fresh = config_mod.load(config.root)
        tree = {
            p.relative_to(fresh.output).as_posix(): p.read_bytes()
            for p in sorted(fresh.output.rglob("*"))
            if p.is_file() and p.name != output.MANIFEST
        }
        manifest = fresh.output / output.MANIFEST
        manifest.write_bytes(output.manifest(tree, output.fingerprint(fresh, sources)))
        files.append(manifest)
    return Written(old=old, new=new, files=tuple(files))


def _repin(item: str, ours: AbstractSet[str], new: str) -> str | None:
    """`item` with its `==` pin set to `new` if it names one of our distributions."""
    try:
        requirement = Requirement(item)
    except InvalidRequirement:
        return None
    if canonicalize_name(requirement.name) not in ours:
        return None
    return re.sub(r"==\s*[^,;\s]+", f"=={new}", item, count=1)


def recorded(config: Config) -> dict[Path, str]:
    """Every place the version is recorded whose value differs from [tool.protoship] version."""
    ours = {canonicalize_name(f.distribution) for f in config.flavours}
    wrong: dict[Path, str] = {}
    for name in [f.distribution for f in config.flavours] + [config.name]:
        pyproject = config.output / name / "pyproject.toml"
        if not pyproject.is_file():
            continue
        project = tomlkit.parse(pyproject.read_text(encoding="utf-8")).unwrap().get("project", {})
        if project.get("version") != config.version:
            wrong[pyproject] = f"version {project.get('version')!r}"
        for items in project.get("optional-dependencies", {}).values():
            for item in items:
                if _repin(item, ours, config.version) not in (None, item):
                    wrong[pyproject] = f"pin {item!r}"
    return wrong

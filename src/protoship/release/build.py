"""Release builds: gate the version, stamp the source commit, build twice, check, hand over.

What ships is packages/ as committed, plus one fact generation cannot know without making every
commit change the output: the commit it came from. Each package is copied aside and its
schema.json extended with `source_commit` there, never in packages/. SOURCE_DATE_EPOCH is the
commit's time, so the same commit always gives the same bytes; the build runs twice to prove it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from protoship import dist, image
from protoship.config import Config
from protoship.errors import PipelineError
from protoship.package import SCHEMA_FILE
from protoship.release import breaking, git, version


@dataclass(frozen=True)
class Built:
    files: tuple[Path, ...]  # in publishing order: flavours first, meta last
    sha256: dict[str, str]
    source_commit: str | None
    dirty: bool
    # Release the schema was compared with, None for a first release.
    baseline: str | None
    warnings: tuple[str, ...]


def expected_files(config: Config) -> list[str]:
    """Wheel and sdist names of every package, in publishing order."""
    names = []
    for directory in dist.package_dirs(config):
        stem = f"{canonicalize_name(directory.name).replace('-', '_')}-{Version(config.version)}"
        names += [f"{stem}-py3-none-any.whl", f"{stem}.tar.gz"]
    return names


def check_version(config: Config) -> None:
    """packages/ must carry the version [tool.protoship] names (bump writes both)."""
    wrong = version.recorded(config)
    if wrong:
        listing = "\n".join(f"  {config.rel(p)}: {what}" for p, what in sorted(wrong.items()))
        raise PipelineError(
            f"packages/ does not carry version {config.version} from pyproject.toml:\n{listing}\n"
            f"Run `nox -s bump -- {config.version}` (or `nox -s generate`)"
        )


def check_fresh(config: Config) -> None:
    """Every flavour's schema.json must describe the schema in the working tree."""
    with tempfile.TemporaryDirectory(prefix="protoship-build-") as tmp:
        digest = image.compile_image(config, Path(tmp)).digest
    for flavour in config.flavours:
        path = config.output / flavour.distribution / SCHEMA_FILE
        recorded = json.loads(path.read_text(encoding="utf-8")).get("descriptor_set_sha256")
        if recorded != digest:
            raise PipelineError(
                f"{config.rel(path)} was generated from another schema than "
                f"{config.rel(config.module)}/; run `nox -s generate` and commit packages/"
            )


def gate(config: Config, use: Sequence[str] = (), *, clean: bool) -> tuple[str | None, list[str]]:
    """Refuse a version that breaks the last release without a major bump, or that is not
    newer than it. `clean`: the working tree's inputs match HEAD.

    Returns the release compared with (None for a first release) and warnings.
    """
    current = Version(config.version)
    tag = f"{git.TAG_PREFIX}{current}"
    tagged = git.tag_commit(config.root, tag)
    # Rebuilding a tagged release from its own commit compares it with the release before.
    rebuild = tagged is not None and tagged == git.head(config.root) and clean
    comparison = breaking.compare(config, use=use, below=current if rebuild else None)
    if comparison is None:
        return None, [f"no release older than {current} is tagged: building a first release"]
    base = comparison.version
    if comparison.breaks and not version.is_bump_of(config.version, base, "major"):
        listing = "\n".join(f"  {b}" for b in comparison.breaks)
        raise PipelineError(
            f"version {current} breaks release {comparison.against} ({base}) without a major "
            f"bump:\n{listing}\nBump with `nox -s bump -- major` "
            f"(-> {version.next_version(config.version, 'major')}) or undo the change"
        )
    if tagged is not None and not rebuild:
        raise PipelineError(
            f"version {current} is already released (tag {tag} at {tagged[:12]}) and this tree "
            f"differs from it; bump first: `nox -s bump -- {comparison.needed}`"
        )
    if current <= base:
        level = comparison.needed
        raise PipelineError(
            f"version {current} is not newer than release {comparison.against}; "
            f"the changes since need a {level} bump: `nox -s bump -- {level}`"
        )
    warnings = []
    if comparison.changes.added and not version.is_bump_of(config.version, base, "minor"):
        warnings.append(
            f"version {current} adds API over {comparison.against} "
            f"({len(comparison.changes.added)} new elements) but is only a patch release; "
            "`nox -s bump -- minor` is the usual bump"
        )
    return comparison.against, warnings


def build(
    config: Config,
    dest: Path,
    *,
    allow_dirty: bool = False,
    use: Sequence[str] = (),
    twice: bool = True,
) -> Built:
    """Build every package into `dest` for release; refuses anything not fit to publish."""
    expected = expected_files(config)
    check_version(config)
    commit, changed = _state(config)
    baseline: str | None = None
    warnings: list[str] = []
    # The schema gate first: a break is the news, whatever else is still to do.
    if commit is None:
        warnings.append("not a git repository: no release to compare with, no source commit")
    else:
        baseline, warnings = gate(config, use, clean=not changed)
    dirty = _require_clean(commit, changed, allow_dirty)
    check_fresh(config)
    epoch = str(git.commit_time(config.root, commit)) if commit is not None else None
    with tempfile.TemporaryDirectory(prefix="protoship-release-") as tmp:
        work = Path(tmp)
        staged = _stage(config, work / "packages", commit, dirty)
        with _environment(SOURCE_DATE_EPOCH=epoch):
            first = dist.build(staged, work / "first", sdist=True)
            if twice:
                second = {p.name: p for p in dist.build(staged, work / "second", sdist=True)}
                differ = [
                    p.name
                    for p in first
                    if p.name not in second or p.read_bytes() != second[p.name].read_bytes()
                ]
                if differ:
                    raise PipelineError(
                        "two builds of the same tree gave different bytes (not reproducible): "
                        + ", ".join(differ)
                    )
        names = [p.name for p in first]
        if sorted(names) != sorted(expected):
            raise PipelineError(
                "the build produced other files than expected:\n"
                f"  missing: {sorted(set(expected) - set(names)) or 'none'}\n"
                f"  unexpected: {sorted(set(names) - set(expected)) or 'none'}"
            )
        twine_check(first)
        files = _hand_over(config, first, dest)
    sha256 = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return Built(tuple(files), sha256, commit, dirty, baseline, tuple(warnings))


def _state(config: Config) -> tuple[str | None, list[str]]:
    """The commit being released, and the changes to what the packages are made from."""
    commit = git.head(config.root) if git.is_repo(config.root) else None
    if commit is None:
        return None, []
    inputs = [config.module, config.buf_yaml, config.buf_gen_yaml, config.pyproject, config.output]
    return commit, git.dirty_paths(config.root, inputs)


def _require_clean(commit: str | None, changed: list[str], allow_dirty: bool) -> bool:
    """Whether the build is dirty; refuses one unless allowed."""
    if allow_dirty:
        return commit is None or bool(changed)
    if commit is None:
        raise PipelineError(
            "no git commit to release from (not a repository, or nothing committed); "
            "commit first, or pass --allow-dirty for a build that records no source commit"
        )
    if changed:
        listing = "\n".join(f"  {p}" for p in changed[:20])
        raise PipelineError(
            f"uncommitted changes in what the release is built from:\n{listing}\n"
            "Commit them (a release records its source commit), or pass --allow-dirty for a "
            "local build marked source_tree_dirty"
        )
    return False


def _stage(config: Config, root: Path, commit: str | None, dirty: bool) -> Config:
    """Copies of the packages with the source commit stamped into each schema.json."""
    for directory in dist.package_dirs(config):
        copy = root / directory.name
        shutil.copytree(directory, copy)
        schema = copy / SCHEMA_FILE
        if schema.is_file():
            data = json.loads(schema.read_text(encoding="utf-8"))
            data["source_commit"] = commit
            if dirty:
                data["source_tree_dirty"] = True
            schema.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return dataclasses.replace(config, output=root)


@contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, leave unset) variables for the builds this process starts."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def twine_check(files: Sequence[Path]) -> None:
    """`twine check --strict`: metadata and README render as the index will show them."""
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    if proc.returncode != 0:
        if "No module named twine" in proc.stderr:
            raise PipelineError(
                "twine is not installed; install the `release` dependency group "
                "(`nox -s build` does)"
            )
        raise PipelineError(f"twine check --strict failed:\n{proc.stdout}{proc.stderr}".strip())


def _hand_over(config: Config, built: Sequence[Path], dest: Path) -> list[Path]:
    """Move the checked files into `dest`, replacing earlier builds of these packages there."""
    dest.mkdir(parents=True, exist_ok=True)
    prefixes = tuple(
        canonicalize_name(d.name).replace("-", "_") + "-" for d in dist.package_dirs(config)
    )
    for old in dest.iterdir():
        if old.name.startswith(prefixes) and old.name.endswith((".whl", ".tar.gz")):
            old.unlink()
    files = []
    for path in built:
        target = dest / path.name
        shutil.copyfile(path, target)
        files.append(target)
    return files

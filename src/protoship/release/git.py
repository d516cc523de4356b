"""The little of git that releases need: HEAD, the state of the tree, release tags, old trees.

A release is a tag `v<PEP 440 version>` reachable from HEAD. The project root may be a
subdirectory of the repository (a monorepo), so old trees are exported from `REF:<prefix>`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from protoship.errors import PipelineError

TAG_PREFIX = "v"


@dataclass(frozen=True)
class Release:
    tag: str
    version: Version
    commit: str


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        raise PipelineError("git was not found on PATH; releases are read from git tags")
    return subprocess.run([git, *args], cwd=root, capture_output=True, check=False)


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


def is_repo(root: Path) -> bool:
    """Whether `root` is inside a git work tree (False, not an error, without git)."""
    if shutil.which("git") is None:
        return False
    proc = _git(root, "rev-parse", "--is-inside-work-tree")
    return proc.returncode == 0 and _out(proc) == "true"


def head(root: Path) -> str | None:
    """The commit HEAD points at, or None outside git or before the first commit."""
    proc = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return _out(proc) if proc.returncode == 0 else None


def commit_time(root: Path, ref: str) -> int:
    return int(_out(_git(root, "show", "-s", "--format=%ct", ref)))


def dirty_paths(root: Path, paths: list[Path]) -> list[str]:
    """Uncommitted changes (including untracked files) under `paths`, as git reports them."""
    rels = [p.resolve().relative_to(root.resolve()).as_posix() or "." for p in paths]
    proc = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *rels)
    if proc.returncode != 0:
        raise PipelineError(f"git status failed: {proc.stderr.decode(errors='replace').strip()}")
    return [line[3:] for line in proc.stdout.decode("utf-8", "replace").splitlines()]


def releases(root: Path) -> list[Release]:
    """Release tags reachable from HEAD, newest version first.

    Only tags merged into HEAD count: a tag on another branch is not this line's last release.
    """
    if head(root) is None:
        return []
    proc = _git(
        root,
        "for-each-ref",
        "--merged=HEAD",
        "--format=%(refname:strip=2) %(objectname) %(*objectname)",
        f"refs/tags/{TAG_PREFIX}*",
    )
    found = []
    for line in _out(proc).splitlines():
        tag, obj, *peeled = line.split()
        try:
            version = Version(tag[len(TAG_PREFIX) :])
        except InvalidVersion:
            continue
        # An annotated tag's object is the tag itself; the peeled object is the commit.
        found.append(Release(tag, version, peeled[0] if peeled else obj))
    return sorted(found, key=lambda r: r.version, reverse=True)


def tag_commit(root: Path, tag: str) -> str | None:
    """The commit a tag points at, or None if there is no such tag (merged or not)."""
    proc = _git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    return _out(proc) if proc.returncode == 0 else None


def resolve(root: Path, ref: str) -> str:
    proc = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        raise PipelineError(
            f"{ref!r} is not a commit, branch or tag in this repository "
            "(try a tag like v1.2.0, a branch, or a commit hash)"
        )
    return _out(proc)


def export(root: Path, ref: str, dest: Path) -> Path:
    """Write the project as it was at `ref` into `dest` (files only, no .git); returns its root.

    `git archive` reads committed objects only, so the working tree is never touched.
    """
    prefix = _out(_git(root, "rev-parse", "--show-prefix"))
    # From the top level: inside a subdirectory, git archive also limits itself to it.
    top = Path(_out(_git(root, "rev-parse", "--show-toplevel")))
    proc = _git(top, "archive", "--format=tar", f"{ref}:{prefix}" if prefix else ref)
    if proc.returncode != 0:
        raise PipelineError(
            f"cannot read the project at {ref}: {proc.stderr.decode(errors='replace').strip()}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        for member in archive.getmembers():
            # Regular files only, written by hand: nothing outside `dest`, no modes or links
            # (tarfile's own extract warns about its changing default filter on 3.12+).
            parts = Path(member.name).parts
            if not member.isfile() or member.name.startswith("/") or ".." in parts:
                continue
            data = archive.extractfile(member)
            if data is None:
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.read())
    return dest

"""Helpers for release tests: a generated copy of the example project in its own git repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import REPO, copy_project

from protoship import pipeline

ORDER = "proto/acme/orders/v1/order.proto"
# Identity and signing settings of the machine's git must not leak into throwaway repos.
_GIT = [
    "git",
    "-c",
    "user.name=protoship tests",
    "-c",
    "user.email=tests@example.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
]


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run([*_GIT, *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def make_repo(dest: Path, tag: str | None = "v0.1.0") -> Path:
    """The example project, generated and committed; tagged as a release unless tag is None."""
    copy_project(REPO, dest)
    (dest / ".gitignore").write_text("dist/\n.protoship/\n", encoding="utf-8")
    pipeline.generate(dest)
    git(dest, "init", "--quiet")
    commit_all(dest, "first release")
    if tag is not None:
        git(dest, "tag", "-a", tag, "-m", tag)
    return dest


def clone(source: Path, dest: Path) -> Path:
    git(source.parent, "clone", "--quiet", str(source), str(dest))
    return dest


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")

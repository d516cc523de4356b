from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("proto", "buf.yaml", "buf.gen.yaml", "pyproject.toml")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the expected files under tests/golden instead of comparing",
    )


def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a protoship project (module, buf configs, pyproject) to generate in."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of this repository's example project."""
    yield copy_project(REPO, tmp_path / "project")


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project, generated once per test session (read-only for tests)."""
    from protoship import pipeline

    root = copy_project(REPO, tmp_path_factory.mktemp("generated") / "project")
    pipeline.generate(root)
    return root

from __future__ import annotations

import shutil
import subprocess
import sys
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
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
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


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def make_venv(path: Path, *requirements: str) -> Path:
    """A fresh virtualenv on this interpreter with `requirements` installed; its python."""
    subprocess.run([*_uv(), "venv", "--quiet", "--python", sys.executable, str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run(
        [*_uv(), "pip", "install", "--quiet", "--python", str(python), *requirements], check=True
    )
    return python


def consumer_spec(root: Path, dest: Path, excluded: dict[str, dict[str, str]]) -> Path:
    """Everything tests/consumer.py needs to import and round-trip the project at `root`."""
    import json

    from protoship import config, image, output, verify

    cfg = config.load(root)
    with output.workspace(cfg) as work:
        img = image.compile_image(cfg, work)
        shutil.copy(img.path, dest / "image.binpb")
    modules = []
    for flavour in cfg.flavours:
        src = cfg.output / flavour.distribution / "src"
        modules += verify.modules([p.relative_to(src).as_posix() for p in src.rglob("*.py")])
    betterproto = next(f for f in cfg.flavours if f.import_root is not None)
    spec = {
        "image": str(dest / "image.binpb"),
        "files": [f.path for f in img.files],
        "modules": modules,
        "import_root": betterproto.import_root,
        "betterproto_key": betterproto.key,
        "excluded": {f.key: sorted(excluded.get(f.key, {})) for f in cfg.flavours},
    }
    path = dest / "spec.json"
    path.write_text(json.dumps(spec, indent=1))
    return path


def install_and_run_consumer(root: Path, tmp: Path, excluded: dict[str, dict[str, str]]) -> str:
    """Build wheels of the generated packages, install both extras into a fresh venv, and run
    tests/consumer.py there with -W error. Returns its output."""
    from protoship import config, dist

    cfg = config.load(root)
    built = dist.build(cfg, tmp / "wheels", sdist=False)
    by_name = {p.name.split("-")[0]: p for p in built}
    meta = by_name.pop(cfg.name.replace("-", "_"))
    extras = ",".join(f.extra for f in cfg.flavours)
    python = make_venv(tmp / "venv", f"{meta}[{extras}]", *map(str, by_name.values()))
    spec = consumer_spec(root, tmp, excluded)
    proc = subprocess.run(
        [str(python), "-W", "error", str(Path(__file__).parent / "consumer.py"), str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    import report

    for line in report.summary(config):
        terminalreporter.write_line(line)

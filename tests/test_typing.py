"""Type checkers accept the generated API: `mypy --strict` over the installed generated packages
and a consumer sample of both flavours (tests/typing/consumer.py, with `assert_type`s), and reject
misuse with the errors kept in tests/typing/fail/*.out (`--update-golden` rewrites them)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from conftest import REPO

from protoship import config

TYPING = Path(__file__).parent / "typing"
FAIL = sorted((TYPING / "fail").glob("*.py"))


def _flavour_packages() -> list[str]:
    """Every package directory the installed flavour distributions ship (those holding
    py.typed for proto-native layouts; the import root for import-root layouts)."""
    cfg = config.load(REPO)
    packages: list[str] = []
    for flavour in cfg.flavours:
        if flavour.import_root is not None:
            packages.append(flavour.import_root)
            continue
        files = importlib.metadata.distribution(flavour.distribution).files or []
        packages += sorted(
            ".".join(PurePosixPath(str(f)).parent.parts) for f in files if f.name == "py.typed"
        )
    assert packages, "no generated packages found installed"
    return packages


@pytest.fixture(scope="module")
def mypy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = config.load(REPO)
    text = (TYPING / "mypy.ini").read_text()
    for flavour in cfg.flavours:
        if flavour.import_root is None:
            continue
        # betterproto2_compiler's own templates for the well-known types and its message pool
        # are not annotated (untyped defs and calls, a match statement mypy rejects, a stale
        # ignore): upstream code we do not edit. The module's own packages stay fully strict.
        text += (
            f"\n[mypy-{flavour.import_root}.google.protobuf,{flavour.import_root}.message_pool]\n"
            "disable_error_code = no-untyped-def,no-untyped-call,unused-ignore,misc\n"
        )
    path = tmp_path_factory.mktemp("mypy") / "mypy.ini"
    path.write_text(text)
    return path


def _mypy(config_file: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": "."}
    env.pop("MYPY_FORCE_COLOR", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config_file),
            "--cache-dir",
            str(config_file.parent / "cache"),
            *targets,
        ],
        cwd=TYPING,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_generated_packages_and_consumer_are_strict_clean(mypy_config: Path) -> None:
    targets = [arg for pkg in _flavour_packages() for arg in ("-p", pkg)]
    proc = _mypy(mypy_config, *targets, "-m", "consumer")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout


@pytest.mark.parametrize("case", FAIL, ids=[p.stem for p in FAIL])
def test_misuse_is_rejected(case: Path, mypy_config: Path, request: pytest.FixtureRequest) -> None:
    proc = _mypy(mypy_config, "-m", f"fail.{case.stem}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = case.with_suffix(".out")
    if request.config.getoption("--update-golden"):
        expected.write_text(proc.stdout)
    assert proc.stdout == expected.read_text()

"""Each extra alone, in a clean virtualenv: it installs from the wheels, every generated module of
that flavour imports with `python -W error` (no version-skew warnings), and nothing of the other
flavour comes along: not its distribution, and not its runtime (the other flavour's requirements
this one does not share), unless a third-party distribution installed here needs it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, make_venv
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from protoship import config, dist, verify

LOWEST = os.environ.get("PROTOSHIP_RESOLUTION") == "lowest-direct"

_INSTALLED = """
import importlib.metadata as md, json
print(json.dumps({d.metadata["Name"]: [d.version, d.requires or []] for d in md.distributions()}))
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheels `nox -s test` built and installed (PROTOSHIP_WHEELS), else built here."""
    found = os.environ.get("PROTOSHIP_WHEELS")
    built = (
        sorted(Path(found).glob("*.whl"))
        if found
        else dist.build(config.load(REPO), tmp_path_factory.mktemp("wheels"), sdist=False)
    )
    return {canonicalize_name(p.name.split("-")[0]): p for p in built}


def _requirement_lines(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def _requires(wheel: Path) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in _requirement_lines(wheel)}


def _floor(req: Requirement) -> str | None:
    floors = [s.version for s in req.specifier if s.operator in (">=", "~=", "==")]
    return max(floors, key=Version) if floors else None


def _assert_floors(wheel: Path, versions: dict[str, str]) -> None:
    """Every requirement of `wheel` with a lower bound is installed at exactly that bound."""
    wrong = {}
    for line in _requirement_lines(wheel):
        req = Requirement(line)
        floor = _floor(req)
        got = versions.get(canonicalize_name(req.name))
        if floor is not None and (got is None or Version(got) != Version(floor)):
            wrong[req.name] = f"declared {req.specifier}, installed {got}"
    assert not wrong, f"lowest-direct did not install the floors of {wheel.name}: {wrong}"


def test_installed_versions_satisfy_what_the_packages_declare() -> None:
    """In this (session) environment every generated package's requirements hold, and in the
    lowest run (`nox -s lowest`) each one sits exactly on its declared floor."""
    cfg = config.load(REPO)
    # With every flavour installed together, a shared requirement sits on the highest floor.
    floors: dict[str, Version] = {}
    for flavour in cfg.flavours:
        for line in importlib.metadata.distribution(flavour.distribution).requires or []:
            req = Requirement(line)
            got = importlib.metadata.version(req.name)
            assert req.specifier.contains(got, prereleases=True), f"{req} but {got} installed"
            floor = _floor(req)
            if floor is not None:
                name = canonicalize_name(req.name)
                floors[name] = max(floors.get(name, Version(floor)), Version(floor))
    assert floors
    if LOWEST:
        wrong = {
            name: f"floor {floor}, installed {importlib.metadata.version(name)}"
            for name, floor in floors.items()
            if Version(importlib.metadata.version(name)) != floor
        }
        assert not wrong, f"not on the declared floors: {wrong}"


def _modules(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return list(verify.modules([n for n in zf.namelist() if ".dist-info/" not in n]))


@pytest.mark.slow
@pytest.mark.parametrize("key", [f.key for f in config.load(REPO).flavours])
def test_extra_alone_installs_imports_and_keeps_to_itself(
    key: str, wheels: dict[str, Path], tmp_path: Path
) -> None:
    cfg = config.load(REPO)
    flavour = next(f for f in cfg.flavours if f.key == key)
    others = [f for f in cfg.flavours if f.key != key]
    meta = wheels[canonicalize_name(cfg.name)]
    own = wheels[canonicalize_name(flavour.distribution)]
    # Lowest run: the flavour's requirements become direct ones, so uv's lowest-direct puts
    # each at its declared floor (conftest.make_venv passes arguments through to uv pip).
    lowest = ["--resolution=lowest-direct", *_requirement_lines(own)] if LOWEST else []
    python = make_venv(tmp_path / "venv", *lowest, f"{meta}[{flavour.extra}]", str(own))

    modules = _modules(own)
    assert modules
    proc = subprocess.run(
        [
            str(python),
            "-W",
            "error",
            "-c",
            "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)",
            *modules,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr

    uv_installed = subprocess.run(
        [str(python), "-c", _INSTALLED], capture_output=True, text=True, check=True, timeout=120
    )
    requires: dict[str, tuple[str, list[str]]] = json.loads(uv_installed.stdout)
    installed = {canonicalize_name(n) for n in requires}
    if LOWEST:
        _assert_floors(own, {canonicalize_name(n): v for n, (v, _) in requires.items()})
    required_by: dict[str, set[str]] = {}
    for who, (_, reqs) in requires.items():
        for line in reqs:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                required_by.setdefault(canonicalize_name(req.name), set()).add(
                    canonicalize_name(who)
                )
    ours = {canonicalize_name(cfg.name)} | {canonicalize_name(f.distribution) for f in cfg.flavours}
    for other in others:
        assert canonicalize_name(other.distribution) not in installed
        foreign = _requires(wheels[canonicalize_name(other.distribution)]) - _requires(own)
        assert foreign, f"{other.key} needs nothing {key} lacks: isolation is not tested"
        for name in sorted(foreign & installed):
            third_party = required_by.get(name, set()) - ours
            assert third_party, f"[{flavour.extra}] pulled {name}, a runtime of {other.key} only"

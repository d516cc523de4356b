"""What ships: wheels built from the generated packages, installed into fresh virtualenvs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protoship import config, dist, image, output

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def make_venv(path: Path, *requirements: str) -> Path:
    subprocess.run([*_uv(), "venv", "--quiet", "--python", sys.executable, str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run(
        [*_uv(), "pip", "install", "--quiet", "--python", str(python), *requirements], check=True
    )
    return python


@pytest.fixture(scope="module")
def wheels(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = dist.build(config.load(generated), tmp_path_factory.mktemp("wheels"), sdist=False)
    return {p.name.split("-")[0]: p for p in built}


def test_both_extras_install_import_and_round_trip(
    generated: Path, wheels: dict[str, Path], tmp_path: Path
) -> None:
    cfg = config.load(generated)
    meta = wheels[cfg.name.replace("-", "_")]
    extras = ",".join(f.extra for f in cfg.flavours)
    flavour_wheels = [str(wheels[f.distribution.replace("-", "_")]) for f in cfg.flavours]
    python = make_venv(tmp_path / "venv", f"{meta}[{extras}]", *flavour_wheels)
    with output.workspace(cfg) as work:
        img = image.compile_image(cfg, work)
        shutil.copy(img.path, tmp_path / "image.binpb")
    betterproto = next(f for f in cfg.flavours if f.import_root is not None)
    proc = subprocess.run(
        [str(python), "-W", "error", str(HERE / "consumer_roundtrip.py"),
         str(tmp_path / "image.binpb"), str(betterproto.import_root)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = int(proc.stdout.split()[1])
    assert count == sum(len(f.messages) for f in img.files)


def test_no_file_belongs_to_two_distributions(wheels: dict[str, Path]) -> None:
    import zipfile

    owners: dict[str, str] = {}
    for name, wheel in wheels.items():
        for member in zipfile.ZipFile(wheel).namelist():
            if ".dist-info/" in member:
                continue
            assert member not in owners, f"{member} in {owners.get(member)} and {name}"
            owners[member] = name
    assert owners

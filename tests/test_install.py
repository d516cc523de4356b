"""What ships: wheels built from the generated packages, installed into fresh virtualenvs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import install_and_run_consumer

from protoship import config, dist, image, output

pytestmark = pytest.mark.slow


def test_both_extras_install_import_and_round_trip(generated: Path, tmp_path: Path) -> None:
    out = install_and_run_consumer(generated, tmp_path, {})
    cfg = config.load(generated)
    with output.workspace(cfg) as work:
        img = image.compile_image(cfg, work)
    assert int(out.split()[1]) >= sum(len(f.messages) for f in img.files) > 0


def test_no_file_belongs_to_two_distributions(generated: Path, tmp_path: Path) -> None:
    owners: dict[str, str] = {}
    for wheel in dist.build(config.load(generated), tmp_path, sdist=False):
        for member in zipfile.ZipFile(wheel).namelist():
            if ".dist-info/" in member:
                continue
            assert member not in owners, f"{member} in {owners.get(member)} and {wheel.name}"
            owners[member] = wheel.name
    assert owners

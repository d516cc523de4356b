"""A real corpus: the .proto files googleapis-common-protos ships (installed from PyPI at test
time, never committed), generated, built, installed into a fresh venv, every module imported
with -W error and every message round-tripped through both flavours."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import pytest
import tomlkit
from conftest import REPO, copy_project, install_and_run_consumer

from protoship import pipeline

pytestmark = pytest.mark.slow


def _googleapis_protos(dest: Path) -> int:
    dist = metadata.distribution("googleapis-common-protos")
    count = 0
    for file in dist.files or ():
        if str(file).endswith(".proto"):
            target = dest / str(file)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(dist.locate_file(file))), target)
            count += 1
    return count


def test_googleapis_common_protos_corpus(tmp_path: Path) -> None:
    root = copy_project(REPO, tmp_path / "project")
    shutil.rmtree(root / "proto")
    count = _googleapis_protos(root / "proto")
    assert count > 30
    pyproject = tomlkit.parse((root / "pyproject.toml").read_text())
    pyproject["tool"]["protoship"]["name"] = "gapi-corpus"
    (root / "pyproject.toml").write_text(tomlkit.dumps(pyproject))

    result = pipeline.generate(root)
    # Every exclusion comes with a reason; nothing is dropped silently.
    assert all(why for reasons in result.excluded.values() for why in reasons.values())
    output = install_and_run_consumer(root, tmp_path, result.excluded)
    words = output.split()
    crossed, single = int(words[1]), int(words[6])
    print(
        f"googleapis-common-protos: {count} files, {crossed} messages across flavours, "
        f"{single} grpcio only, left out: {result.excluded}"
    )
    assert crossed > 100, output

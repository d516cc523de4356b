"""Hard proto features, one case directory each under tests/realworld/.

Each case generates, builds, installs both extras into a fresh venv, imports every module with
-W error and round-trips every message through both flavours, or asserts the precise refusal
listed in its expect.toml (which flavour leaves out which file, and why).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from conftest import REPO, copy_project, install_and_run_consumer

from protoship import config, pipeline
from protoship.errors import PipelineError

CASES = Path(__file__).parent / "realworld"
pytestmark = pytest.mark.slow


def _project(case: Path, dest: Path) -> Path:
    root = copy_project(REPO, dest)
    shutil.rmtree(root / "proto")
    shutil.copytree(case / "proto", root / "proto")
    pyproject = tomlkit.parse((root / "pyproject.toml").read_text())
    pyproject["tool"]["protoship"]["name"] = f"rw-{case.name.replace('_', '-')}"
    (root / "pyproject.toml").write_text(tomlkit.dumps(pyproject))
    return root


def _expected(case: Path, kind: str) -> dict[tuple[str, str], str]:
    path = case / "expect.toml"
    data: dict[str, Any] = tomlkit.parse(path.read_text()).unwrap() if path.is_file() else {}
    return {(e["flavour"], e["file"]): e["reason"] for e in data.get(kind, [])}


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_case(case: str, tmp_path: Path) -> None:
    root = _project(CASES / case, tmp_path / "project")
    result = pipeline.generate(root)
    for kind, actual in (("left_out", result.excluded), ("fallback", result.fallback)):
        expected = _expected(CASES / case, kind)
        got = {(k, path): why for k, reasons in actual.items() for path, why in reasons.items()}
        assert sorted(got) == sorted(expected), f"{kind}: {got}"
        for key, reason in expected.items():
            assert reason in got[key], f"{kind} {key}: {got[key]!r} lacks {reason!r}"
    assert len(result.warnings) == sum(len(v) for v in result.excluded.values()) + sum(
        len(v) for v in result.fallback.values()
    )
    cfg = config.load(root)
    for flavour in cfg.flavours:
        left_out = result.excluded.get(flavour.key, {})
        package = cfg.output / flavour.distribution
        schema = json.loads((package / "schema.json").read_text())
        assert schema["excluded"] == left_out, "exclusions ship in the package metadata"
        readme = (package / "README.md").read_text()
        for path, why in left_out.items():
            assert f"- `{path}`: {why}" in readme
    output = install_and_run_consumer(root, tmp_path, result.excluded)
    words = output.split()
    assert int(words[1]) + int(words[6]) > 0, output


def test_strict_turns_refusals_into_an_error(tmp_path: Path) -> None:
    root = _project(CASES / "editions", tmp_path / "project")
    with pytest.raises(PipelineError, match=r"(?s)--strict: .*ed/v1/modern.proto.*Editions"):
        pipeline.generate(root, strict=True)
    assert not (root / "packages").exists()

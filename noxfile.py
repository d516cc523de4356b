# /// script
# dependencies = ["nox>=2025.2.9"]
# ///
"""Sessions for protoship. Each one installs what it needs and calls the pipeline package;
the work itself lives in src/protoship and is tested without nox."""

from __future__ import annotations

import os
import shutil
import zipfile
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


def _shipped_wheels(session: nox.Session) -> tuple[Path, list[str]]:
    """Wheels built from packages/ (generated first on a fresh clone), and the requirements
    that install them by path: the meta package with every extra, and each flavour. Never
    from an index, so a same-named project elsewhere cannot stand in for them."""
    if not (OUTPUT / ".protoship-manifest.json").is_file():
        session.log("packages/ not generated yet: generating first")
        session.run("python", "-m", "protoship", "generate")
    wheels = Path(session.create_tmp()) / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    session.run("python", "-m", "protoship", "build", "--wheel-only", "--out", str(wheels))
    meta = PYPROJECT["tool"]["protoship"]["name"].replace("-", "_") + "-"
    extras = ",".join(PYPROJECT["tool"]["protoship"]["flavours"])
    return wheels, [
        f"{w}[{extras}]" if w.name.startswith(meta) else str(w)
        for w in sorted(wheels.glob("*.whl"))
    ]


@nox.session
def generate(session: nox.Session) -> None:
    """Generate packages/ from proto/ (`-- --check` fails on drift, `-- --force` always runs)."""
    _install(session, "generate")
    session.run("python", "-m", "protoship", "generate", *session.posargs)


@nox.session(python=PYTHONS)
def test(session: nox.Session) -> None:
    """Test the pipeline and the packages it ships, on every supported Python."""
    _install(session, "test")
    wheels, requirements = _shipped_wheels(session)
    session.install(*requirements)
    session.run("pytest", *session.posargs, env={"PROTOSHIP_WHEELS": str(wheels)})


@nox.session(python=PYTHONS[0], default=False)
def lowest(session: nox.Session) -> None:
    """Install the wheels with every dependency at its declared floor and rerun the wire tests."""
    _install(session, "test")
    wheels, requirements = _shipped_wheels(session)
    built = sorted(wheels.glob("*.whl"))
    # The packages' own requirements, passed as direct ones: lowest-direct then installs each on
    # its floor (transitive dependencies stay highest), replacing what the test group brought.
    floors = []
    for wheel in built:
        with zipfile.ZipFile(wheel) as zf:
            metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            floors += [
                line.split(":", 1)[1].strip()
                for line in zf.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line
            ]
    python = str(Path(session.bin) / "python")
    session.run(
        "uv",
        "pip",
        "install",
        "--python",
        python,
        "--resolution=lowest-direct",
        "--upgrade",
        *requirements,
        *floors,
    )
    session.run("uv", "pip", "check", "--python", python)
    tests = ("tests/test_roundtrip.py", "tests/test_interop.py", "tests/test_extras.py")
    env = {"PROTOSHIP_WHEELS": str(wheels), "PROTOSHIP_RESOLUTION": "lowest-direct"}
    session.run("pytest", *tests, *session.posargs, env=env)


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """Lint the proto module with buf and the Python code with ruff and mypy --strict."""
    _install(session, "lint", "generate")
    # buf.yaml's lint rules on the compiled image, and `buf format -d --exit-code` on proto/.
    session.run("python", "-m", "protoship", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def breaking(session: nox.Session) -> None:
    """Check the schema against the last release tag (`-- --against REF`, `-- --use WIRE`)."""
    _install(session, "generate")
    session.run("python", "-m", "protoship", "breaking", *session.posargs)


@nox.session
def bump(session: nox.Session) -> None:
    """Set the version (`-- major|minor|patch|X.Y.Z`); without one, print the bump needed."""
    _install(session, "generate")
    session.run("python", "-m", "protoship", "bump", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build every package into dist/ for release: gated, stamped, reproducible, twine-checked."""
    _install(session, "generate", "release")
    session.run("python", "-m", "protoship", "dist", *session.posargs)


@nox.session(default=False)
def publish(session: nox.Session) -> None:
    """Upload dist/ to HATCH_INDEX_REPO with HATCH_INDEX_USER/HATCH_INDEX_AUTH, flavours first."""
    _install(session, "release")
    session.run("python", "-m", "protoship", "publish", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Time generate against protoc and the stock betterproto2 plugin (`-- --help` for sizes)."""
    # The generate group holds every tool measured, the stock betterproto2 plugin included.
    _install(session, "generate")
    session.run("python", "-m", "protoship.bench", *session.posargs)


if __name__ == "__main__":
    nox.main()

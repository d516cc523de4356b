"""Build the packages in the output directory into wheels and sdists.

Tests and releases both install what this builds, never the source tree. hatchling's builds are
reproducible by default (fixed timestamps, sorted entries), so two builds give identical bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from protoship.config import Config
from protoship.errors import PipelineError


def package_dirs(config: Config) -> list[Path]:
    """Flavour packages first, then the meta package: the order they must be published in."""
    dirs = [config.output / f.distribution for f in config.flavours]
    dirs.append(config.output / config.name)
    missing = [d for d in dirs if not (d / "pyproject.toml").is_file()]
    if missing:
        raise PipelineError(
            f"{config.rel(missing[0])}/pyproject.toml not found; run `nox -s generate` first"
        )
    return dirs


def build(config: Config, dest: Path, *, sdist: bool = True) -> list[Path]:
    """Build every package into `dest`; returns the files built, in publishing order."""
    dest.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    built: list[Path] = []
    for directory in package_dirs(config):
        before = set(dest.iterdir())
        kinds = ["--wheel", "--sdist"] if sdist else ["--wheel"]
        if uv is not None:
            cmd = [uv, "build", "--quiet", *kinds, "--out-dir", str(dest), str(directory)]
        else:
            cmd = [sys.executable, "-m", "build", *kinds, "--outdir", str(dest), str(directory)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PipelineError(
                f"building {config.rel(directory)} failed:\n{proc.stderr.strip() or proc.stdout}"
            )
        built += sorted(
            p for p in set(dest.iterdir()) - before if p.name.endswith((".whl", ".tar.gz"))
        )
    return built

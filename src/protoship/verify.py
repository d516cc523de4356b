"""Import every generated module before the output is swapped in.

Code that fails at import time (a name clash, a missing import, a runtime version check) must
never reach packages/. Each flavour is imported in a fresh interpreter with warnings as errors,
from the staged tree, with the toolchain's runtimes installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from protoship.config import Config, Flavour
from protoship.errors import PipelineError

_IMPORTER = """
import importlib, sys, traceback
failed = 0
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed += 1
        last = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"{name}: {type(exc).__name__}: {exc} ({last.filename}:{last.lineno})")
sys.exit(1 if failed else 0)
"""


def modules(files: list[str]) -> list[str]:
    """Dotted module names of the .py files (relative to a package's src/)."""
    names = []
    for rel in files:
        path = PurePosixPath(rel)
        if path.suffix != ".py":
            continue
        parts = path.with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return sorted(names)


def import_all(config: Config, stage: Path) -> None:
    """Import each flavour's modules from `stage`; raise listing every module that fails."""

    def run(flavour: Flavour) -> str:
        src = stage / flavour.distribution / "src"
        names = modules(
            [p.relative_to(src).as_posix() for p in src.rglob("*.py")] if src.is_dir() else []
        )
        if not names:
            return ""
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-c", _IMPORTER, *names],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode == 0:
            return ""
        report = proc.stdout.strip() or proc.stderr.strip()
        return f"flavour {flavour.key!r} ({flavour.distribution}):\n" + "\n".join(
            "  " + line.replace(str(stage) + os.sep, "") for line in report.splitlines()
        )

    with ThreadPoolExecutor(max_workers=max(1, len(config.flavours))) as pool:
        failures = [r for r in pool.map(run, config.flavours) if r]
    if failures:
        raise PipelineError(
            "generated code fails to import; packages/ was left as it was:\n"
            + "\n".join(failures)
        )

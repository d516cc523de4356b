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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from protoship.config import Flavour
from protoship.errors import PipelineError
from protoship.generate import Generated
from protoship.image import Image

# The cyclic garbage collector is off while importing: tens of thousands of classes (and their
# generated __init__ functions) make it run over and over for almost nothing to collect (peak
# memory unchanged, about 20% less time on a large betterproto flavour). Nothing is imported
# differently.
_IMPORTER = r"""
import gc, importlib, sys, traceback
gc.disable()
failed = 0
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed += 1
        last = traceback.extract_tb(exc.__traceback__)[-1]
        message = str(exc).replace("\n", " ")
        print(f"{name}\t{type(exc).__name__}: {message} ({last.filename}:{last.lineno})")
sys.exit(1 if failed else 0)
"""


@dataclass(frozen=True)
class ImportFailure:
    flavour: Flavour
    module: str
    # The generated file, relative to the flavour's output root (as plugins name it).
    file: str
    message: str


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


# Below this much source a second interpreter costs more than it saves.
_CHUNK_BYTES = 4_000_000


def check_generated(
    flavour: Flavour, files: list[Generated], root: Path, image: Image | None = None
) -> list[ImportFailure]:
    """Import a flavour's freshly generated files, laid out under `root` as its package will
    lay them out, before packaging: so this can run while other flavours still generate.
    (Packaging adds only comment headers and drops modules; it changes no code.) With the
    `image`, interpreters are split only where their imports overlap little."""
    src = root / "src"
    prefix = src / flavour.import_root if flavour.import_root else src
    made: set[Path] = set()
    for gen in files:
        if not gen.path.endswith(".py"):
            continue  # stubs and data are never imported
        path = prefix / gen.path
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        try:
            # A link, not a copy: on a large tree this is hundreds of MB not written again.
            os.link(gen.source or "", path)
        except OSError:
            path.write_bytes(gen.content)
    return import_flavour(flavour, src, image)


def import_flavour(flavour: Flavour, src: Path, image: Image | None = None) -> list[ImportFailure]:
    """Import every module under `src`. Large proto-native flavours are split across
    interpreters so that every core imports, unless their imports overlap so much that each
    interpreter would import most of the tree anyway (see `_overlap`)."""
    cores = os.cpu_count() or 1
    names = modules(
        [p.relative_to(src).as_posix() for p in src.rglob("*.py")] if src.is_dir() else []
    )
    # Modules under one import root import each other through it: every interpreter would
    # import the whole tree, so splitting such a flavour only doubles the work.
    parts = 1 if flavour.import_root is not None else cores
    sizes = {name: _module_path(src, name).stat().st_size for name in names}
    chunks = _balanced(sizes, parts)
    if len(chunks) > 1 and image is not None and _overlap(src, chunks, image, sizes) > _MAX_OVERLAP:
        chunks = [sorted(names)]
    with ThreadPoolExecutor(max_workers=max(1, len(chunks))) as pool:
        results = pool.map(lambda chunk: _import(flavour, src, chunk), chunks)
        return [failure for result in results for failure in result]


# Split interpreters may import this much more, in all, than one interpreter would.
_MAX_OVERLAP = 1.25


def _overlap(src: Path, chunks: list[list[str]], image: Image, sizes: dict[str, int]) -> float:
    """What the interpreters of a split import, in all, over what one would: each imports
    its modules and the modules of everything their .proto files import. `sizes`: bytes of
    each module."""
    sources = {
        name: {
            f.path for f in image.sources_of(_module_path(src, name).relative_to(src).as_posix())
        }
        for chunk in chunks
        for name in chunk
    }
    by_source: dict[str, list[str]] = {}
    for name, paths in sources.items():
        for path in paths:
            by_source.setdefault(path, []).append(name)
    total = sum(sizes[name] for name in sources)
    split = 0
    for chunk in chunks:
        reached = image.closure({p for name in chunk for p in sources[name]})
        split += sum(sizes[n] for n in {n for p in reached for n in by_source.get(p, ())})
    return split / total if total else 1.0


def _module_path(src: Path, name: str) -> Path:
    """The file of a dotted module name under `src`: `a/b.py`, or `a/b/__init__.py`."""
    base = src.joinpath(*name.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


def _balanced(sizes: dict[str, int], cores: int) -> list[list[str]]:
    """Split modules across interpreters by source size (`sizes`: bytes of each), largest
    first onto the lightest (a betterproto package module can be megabytes; a _pb2_grpc module
    a few lines)."""
    names = list(sizes)
    parts = max(1, min(cores, sum(sizes.values()) // _CHUNK_BYTES))
    chunks: list[list[str]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for name in sorted(names, key=lambda n: -sizes[n]):
        lightest = loads.index(min(loads))
        chunks[lightest].append(name)
        loads[lightest] += sizes[name]
    return [sorted(chunk) for chunk in chunks if chunk]


def _import(flavour: Flavour, src: Path, names: list[str]) -> list[ImportFailure]:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", _IMPORTER, *names],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode == 0:
        return []
    found = []
    for line in proc.stdout.splitlines():
        module, _, message = line.partition("\t")
        found.append(
            ImportFailure(
                flavour,
                module,
                _file_of(src, module, flavour.import_root),
                message.replace(str(src) + os.sep, ""),
            )
        )
    if not found:
        raise PipelineError(f"importing flavour {flavour.key!r} crashed Python:\n{proc.stderr}")
    return found


def _file_of(src: Path, module: str, import_root: str | None) -> str:
    rel = _module_path(src, module).relative_to(src).as_posix()
    return rel.removeprefix(f"{import_root}/") if import_root else rel

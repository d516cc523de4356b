"""The output directory: fingerprint, manifest, drift check, and the atomic swap.

packages/ is only ever replaced whole, by renaming a fully built and verified staging tree into
place, so a failed run leaves it byte-for-byte as it was. A manifest inside it records the input
fingerprint and a hash of every file; when both still match, a run is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from protoship import toolchain
from protoship.config import Config

MANIFEST = ".protoship-manifest.json"


def fingerprint(config: Config, sources: list[str]) -> str:
    """Hash of everything that decides the output: sources, configuration, toolchain."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    for rel in sources:
        add(f"proto:{rel}", (config.module / rel).read_bytes())
    add("buf.yaml", config.buf_yaml.read_bytes())
    add("buf.gen.yaml", config.buf_gen_yaml.read_bytes())
    add("config", json.dumps(config.raw, sort_keys=True, default=str).encode())
    add("tools", json.dumps(toolchain.versions(), sort_keys=True).encode())
    add("pipeline", toolchain.pipeline_digest().encode())
    return digest.hexdigest()


def manifest(tree: Mapping[str, bytes], fingerprint: str) -> bytes:
    files = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(tree.items())}
    return (
        json.dumps({"fingerprint": fingerprint, "files": files}, indent=1, sort_keys=True) + "\n"
    ).encode()


def up_to_date(output: Path, fingerprint: str) -> bool:
    """Whether `output` was made from this fingerprint and has not been touched since."""
    try:
        recorded = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if recorded.get("fingerprint") != fingerprint:
        return False
    files: dict[str, str] = recorded.get("files", {})
    present = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()}
    if present != set(files) | {MANIFEST}:
        return False
    return all(
        hashlib.sha256((output / rel).read_bytes()).hexdigest() == digest
        for rel, digest in files.items()
    )


@dataclass(frozen=True)
class Drift:
    changed: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed or self.missing or self.unexpected)


def compare(output: Path, tree: Mapping[str, bytes], ignore: tuple[str, ...] = ()) -> Drift:
    """How `output` differs from the tree that generation would write."""
    present = (
        {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()}
        if output.is_dir()
        else set()
    ) - set(ignore)
    changed = sorted(p for p in present & set(tree) if (output / p).read_bytes() != tree[p])
    return Drift(
        tuple(changed), tuple(sorted(set(tree) - present)), tuple(sorted(present - set(tree)))
    )


@contextmanager
def workspace(config: Config) -> Iterator[Path]:
    """A scratch directory on the output's filesystem, so the final rename is atomic."""
    base = config.root / ".protoship"
    base.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_tree(root: Path, tree: Mapping[str, bytes], previous: Path | None) -> None:
    """Write `tree` under `root`. Files identical to the previous output are hard-linked from
    it, so unchanged outputs keep their identity and mtime."""
    for rel, data in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        old = previous / rel if previous is not None else None
        if old is not None and old.is_file() and old.stat().st_size == len(data):
            if old.read_bytes() == data:
                try:
                    os.link(old, path)
                    continue
                except OSError:
                    pass
        path.write_bytes(data)


def swap(stage: Path, output: Path, trash: Path) -> None:
    """Put `stage` in place of `output`; the old tree goes to `trash` and is removed."""
    if output.exists():
        output.rename(trash)
    stage.rename(output)
    shutil.rmtree(trash, ignore_errors=True)

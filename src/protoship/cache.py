"""Files of earlier plugin runs, kept between `generate` runs in `.protoship/cache/`.

A plugin run is decided by its request image, its one-plugin template and the toolchain: when
all three are byte for byte those of an earlier run, that run's files are used instead of
running it again. After a tree is split into parts (see generate), changing one file changes
the requests of the parts that hold it (and of those that read its descriptors), not the rest.

Only generators whose code the toolchain fingerprint covers are cached: protoc's builtins
(grpcio-tools' version), the plugins of mypy-protobuf and betterproto2-compiler (their
versions) and protoship's own (the pipeline digest). A user's own plugin always runs: editing
it changes nothing a key could see. `generate --force` reads nothing from here, and the cache
keeps only the entries the last successful run used, so it holds at most one tree's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from protoship import toolchain

_DONE = ".complete"


class RunCache:
    def __init__(self, root: Path, *, read: bool = True) -> None:
        self.root = root
        self.read = read
        self.used: set[str] = set()

    def key(self, *parts: bytes) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(toolchain.versions(), sort_keys=True).encode())
        digest.update(toolchain.pipeline_digest().encode())
        for part in parts:
            digest.update(f"{len(part)}\0".encode())
            digest.update(part)
        return digest.hexdigest()

    def get(self, key: str) -> Path | None:
        """The directory holding the files of the run with this key, if kept."""
        entry = self.root / key
        if not self.read or not (entry / _DONE).is_file():
            return None
        self.used.add(key)
        return entry / "out"

    def put(self, key: str, out: Path) -> Path:
        """Keep the files a run wrote under `out` (moved, not copied); where they are now."""
        entry = self.root / key
        staging = self.root / f"{key}.tmp{os.getpid()}"
        try:
            staging.mkdir(parents=True)
            out.rename(staging / "out")
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            return out
        try:
            (staging / _DONE).write_text("")
            if entry.exists():
                shutil.rmtree(entry)
            staging.rename(entry)
        except OSError:
            return staging / "out"  # still usable; pruned after the run
        self.used.add(key)
        return entry / "out"

    def keep_only_used(self) -> None:
        """Drop every entry the current run did not use (and leftovers of interrupted runs)."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name not in self.used:
                shutil.rmtree(entry, ignore_errors=True)

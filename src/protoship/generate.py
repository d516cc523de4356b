"""Run the generators declared in buf.gen.yaml over the image, one `buf generate` per flavour.

Each plugin writes into a directory of its own, so every output file is attributed to exactly one
plugin (its header says which, and two plugins writing one file is an error, not a silent
overwrite). Flavours run concurrently: buf already parallelises plugins within one run, and the
flavours share nothing but the read-only image.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from protoship import toolchain
from protoship.config import Config, Flavour, Plugin
from protoship.errors import PipelineError
from protoship.image import Image


@dataclass(frozen=True)
class Generated:
    """One generated file, before packaging."""

    path: str  # relative to the flavour's output root, posix
    content: bytes
    plugin: Plugin


def run(
    config: Config, image: Image, workdir: Path, excluded: dict[str, frozenset[str]]
) -> dict[str, list[Generated]]:
    """Generate every flavour; returns the files per flavour key, sorted by path."""
    buf = toolchain.buf_executable()
    with ThreadPoolExecutor(max_workers=max(1, len(config.flavours))) as pool:
        futures = {
            f.key: pool.submit(
                _run_flavour, config, buf, image, f, workdir / f.key, excluded.get(f.key, frozenset())
            )
            for f in config.flavours
        }
        return {key: future.result() for key, future in futures.items()}


def _template(flavour: Flavour) -> dict[str, Any]:
    plugins = []
    for index, plugin in enumerate(flavour.plugins):
        spec = dict(plugin.spec)
        spec["out"] = str(index)
        plugins.append(spec)
    return {"version": "v2", "plugins": plugins}


def _run_flavour(
    config: Config,
    buf: str,
    image: Image,
    flavour: Flavour,
    workdir: Path,
    excluded: frozenset[str],
) -> list[Generated]:
    if len(excluded) >= len(image.files):
        return []
    workdir.mkdir(parents=True)
    template = workdir / "buf.gen.yaml"
    template.write_text(yaml.safe_dump(_template(flavour), sort_keys=False), encoding="utf-8")
    out = workdir / "out"
    args = [buf, "generate", str(image.path), "--template", str(template), "--output", str(out)]
    for path in sorted(excluded):
        args += ["--exclude-path", path]
    proc = subprocess.run(
        args, capture_output=True, text=True, env=toolchain.tool_env(), check=False, cwd=workdir
    )
    if proc.returncode != 0:
        raise PipelineError(_plugin_error(config, flavour, proc.stderr))
    files: dict[str, Generated] = {}
    for index, plugin in enumerate(flavour.plugins):
        root = out / str(index)
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if rel in files:
                raise PipelineError(
                    f"{config.buf_gen_yaml.name}:{plugin.line}: plugin {plugin.label} and "
                    f"plugin {files[rel].plugin.label} (line {files[rel].plugin.line}) both "
                    f"write {rel} in flavour {flavour.key!r}; give one of them other options"
                )
            files[rel] = Generated(rel, path.read_bytes(), plugin)
    return [files[k] for k in sorted(files)]


def _plugin_error(config: Config, flavour: Flavour, stderr: str) -> str:
    """buf's message, with the buf.gen.yaml line of the plugin that failed, where known."""
    text = stderr.strip()
    culprit = None
    for plugin in flavour.plugins:
        name = str(plugin.spec.get("local") or plugin.spec.get("protoc_builtin") or "")
        short = name.removeprefix("protoc-gen-")
        if name and (f"plugin {short}" in text or f"plugin {name}" in text or name in text):
            culprit = plugin
    where = (
        f"{config.buf_gen_yaml.name}:{culprit.line}: plugin {culprit.label}"
        if culprit
        else f"{config.buf_gen_yaml.name}: a plugin"
    )
    return (
        f"{where} failed while generating flavour {flavour.key!r}:\n"
        + "\n".join("  " + line for line in text.splitlines())
    )

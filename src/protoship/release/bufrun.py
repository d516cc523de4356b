"""Run `buf lint` and `buf breaking` on images and report findings as the user sees them.

buf reads an image's files by their module-relative names (`acme/x.proto`), while buf.yaml v2
writes `ignore` paths relative to the workspace (`proto/acme/x.proto`). Handed the raw buf.yaml,
buf would silently apply no ignore at all to an image, so the checks get a derived config whose
paths are rewritten to the image's names, and findings are mapped back to `proto/...`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from protoship import toolchain
from protoship.config import Config
from protoship.errors import PipelineError

Check = Literal["lint", "breaking"]
# buf's exit code when it ran fine and found problems.
_FOUND = 100


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message} [{self.rule}]"


def check_config(config: Config, check: Check, use: Sequence[str] = ()) -> dict[str, Any]:
    """The `lint` or `breaking` section buf.yaml gives the module, as buf should see an image.

    A module-level section replaces the top-level one (buf v2 semantics). `use` overrides the
    rule categories, e.g. ("WIRE_JSON",) to allow renames during a migration.
    """
    data = yaml.safe_load(config.buf_yaml.read_text(encoding="utf-8")) or {}
    section: dict[str, Any] = dict(data.get(check) or {})
    for module in data.get("modules") or []:
        if isinstance(module, dict) and module.get(check):
            section = dict(module[check])
    if use:
        section["use"] = list(use)
    prefix = config.rel(config.module).rstrip("/") + "/"
    if prefix == "./":
        prefix = ""

    def image_path(path: str) -> str:
        return path[len(prefix) :] if prefix and path.startswith(prefix) else path

    if "ignore" in section:
        section["ignore"] = [image_path(str(p)) for p in section["ignore"]]
    if "ignore_only" in section:
        section["ignore_only"] = {
            rule: [image_path(str(p)) for p in paths]
            for rule, paths in (section["ignore_only"] or {}).items()
        }
    return {"version": "v2", check: section}


def run(
    config: Config, check: Check, image: Path, against: Path | None = None, use: Sequence[str] = ()
) -> list[Finding]:
    """Findings of `buf lint IMAGE` or `buf breaking IMAGE --against AGAINST`, sorted."""
    args = [toolchain.buf_executable(), check, str(image)]
    if against is not None:
        args += ["--against", str(against)]
    args += ["--config", json.dumps(check_config(config, check, use)), "--error-format", "json"]
    proc = subprocess.run(
        args, capture_output=True, text=True, check=False, env=toolchain.tool_env()
    )
    if proc.returncode not in (0, _FOUND):
        raise PipelineError(
            f"buf {check} failed (check `{check}:` in {config.buf_yaml.name}):\n"
            + (proc.stderr.strip() or proc.stdout.strip())
        )
    module = config.rel(config.module)
    findings = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        path = item.get("path", "")
        # Findings name module files only (imports are never checked), including files that
        # exist only in the old image, so every path gets the module's directory in front.
        shown = f"{module}/{path}" if path and module not in ("", ".") else path
        findings.append(
            Finding(
                path=shown,
                line=int(item.get("start_line", 0)),
                column=int(item.get("start_column", 0)),
                rule=str(item.get("type", "")),
                message=str(item.get("message", "")),
            )
        )
    if proc.returncode == _FOUND and not findings:
        raise PipelineError(f"buf {check} reported problems it did not describe:\n{proc.stderr}")
    return sorted(findings, key=lambda f: (f.path, f.line, f.column, f.rule))


def format_diff(config: Config) -> str:
    """`buf format -d` over the module: the diff that formatting would apply, or ""."""
    proc = subprocess.run(
        [toolchain.buf_executable(), "format", "-d", "--exit-code", config.rel(config.module)],
        cwd=config.root,
        capture_output=True,
        text=True,
        check=False,
        env=toolchain.tool_env(),
    )
    if proc.returncode not in (0, _FOUND):
        raise PipelineError(f"buf format failed:\n{proc.stderr.strip()}")
    return proc.stdout

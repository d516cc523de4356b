"""Lint the proto module: buf.yaml's lint rules on the compiled image, and buf's formatting.

Lint runs on the same image generation compiles (buf cannot build the module offline when it
imports googleapis), with buf.yaml's `lint:` section applied as written (see bufrun).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from protoship import image
from protoship.config import Config
from protoship.release import bufrun


@dataclass(frozen=True)
class LintResult:
    findings: tuple[bufrun.Finding, ...]
    # `buf format -d` output: what formatting would change, empty when the module is formatted.
    format_diff: str

    def __bool__(self) -> bool:
        return bool(self.findings or self.format_diff)


def lint(config: Config) -> LintResult:
    with tempfile.TemporaryDirectory(prefix="protoship-lint-") as tmp:
        compiled = image.compile_image(config, Path(tmp))
        findings = bufrun.run(config, "lint", compiled.path)
    return LintResult(tuple(findings), bufrun.format_diff(config))

"""Decide, before generation, which files each flavour takes.

A file is left out of a flavour because the configuration says so (`exclude` under
[tool.protoship.flavours.<key>]) or because it imports a file that was left out (the generated
module could not import its dependency). Each exclusion carries the reason that ends up in the
warning, the package README and the package metadata.
"""

from __future__ import annotations

from protoship.config import Config
from protoship.image import Image, matches


def exclusions(config: Config, image: Image) -> dict[str, dict[str, str]]:
    """{flavour key: {module-relative proto path: reason}}."""
    result: dict[str, dict[str, str]] = {}
    for flavour in config.flavours:
        reasons = {
            f.path: "excluded by configuration"
            for f in image.files
            if flavour.exclude and matches(f.path, flavour.exclude)
        }
        _close_over_importers(image, reasons)
        result[flavour.key] = reasons
    return result


def _close_over_importers(image: Image, reasons: dict[str, str]) -> None:
    changed = True
    while changed:
        changed = False
        for f in image.files:
            if f.path in reasons:
                continue
            blocked = next((d for d in f.dependencies if d in reasons), None)
            if blocked is not None:
                reasons[f.path] = f"imports {blocked}, which is left out"
                changed = True

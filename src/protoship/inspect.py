"""Decide, before generation, which files each flavour takes.

A file is left out of a flavour when the configuration says so (`exclude` under
[tool.protoship.flavours.<key>]), when one of the flavour's plugins is known not to handle a
language feature the file uses, or when it imports a file that was left out (the generated
module could not import its dependency). Each exclusion carries the reason that ends up in the
warning, the package README and the package's schema.json.
"""

from __future__ import annotations

from protoship.config import Config, Flavour
from protoship.image import Image, matches

# What a plugin is known not to handle: {plugin executable: {feature: reason}}. Features are
# computed from the descriptors in image._features. Known gaps are refused before generation,
# with the upstream reason, instead of failing or producing code that drops data.
_BETTERPROTO2: dict[str, str] = {
    "editions": "betterproto2 does not support Editions (its plugin does not declare "
    "FEATURE_SUPPORTS_EDITIONS)",
    "groups": "betterproto2 cannot represent proto2 groups (NotImplementedError: Unknown "
    "type GROUP)",
    "proto2-presence": "betterproto2 treats proto2 `optional` fields as implicit presence "
    "(a field set to its default is not serialized) and ignores [default = ...]",
    "extensions": "betterproto2 does not represent proto2 extensions: extension fields "
    "would survive only as unknown bytes, with no API to read or set them",
}
LIMITATIONS: dict[str, dict[str, str]] = {
    "protoc-gen-python_betterproto2": _BETTERPROTO2,
    # Same generator, faster driver (byte-identical output): same limits.
    "protoc-gen-python_betterproto2_fast": _BETTERPROTO2,
}


def exclusions(config: Config, image: Image) -> dict[str, dict[str, str]]:
    """{flavour key: {module-relative proto path: reason}}."""
    result: dict[str, dict[str, str]] = {}
    for flavour in config.flavours:
        reasons: dict[str, str] = {}
        for f in image.files:
            if flavour.exclude and matches(f.path, flavour.exclude):
                reasons[f.path] = "excluded by configuration"
                continue
            why = _unsupported(flavour, f.features)
            if why is not None:
                reasons[f.path] = why
        close_over_importers(image, reasons)
        result[flavour.key] = reasons
    return result


def close_over_importers(image: Image, reasons: dict[str, str]) -> None:
    """Leave out every file that imports a left-out file, saying which import it was."""
    for path, dep in image.importers(set(reasons)).items():
        reasons[path] = f"imports {dep}, which is left out"


def _unsupported(flavour: Flavour, features: frozenset[str]) -> str | None:
    for plugin in flavour.plugins:
        limits = LIMITATIONS.get(str(plugin.spec.get("local")), {})
        for feature in sorted(features):
            if feature in limits:
                return limits[feature]
    return None

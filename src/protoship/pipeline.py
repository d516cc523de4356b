"""`generate`: the stages in order. Each stage is a module; this only sequences them.

    config --> image (compile once) --> inspect (what each flavour takes)
           --> generate (buf generate per flavour) --> package (trees, pyproject, README)
           --> verify (import everything) --> swap into the output directory
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protoship import config as config_mod
from protoship import generate as generate_mod
from protoship import image as image_mod
from protoship import inspect, output, package, verify
from protoship.errors import PipelineError


@dataclass(frozen=True)
class Result:
    status: str  # "generated", "unchanged" or "checked"
    files: int
    packages: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    drift: output.Drift | None = None


def _silent(message: str) -> None:
    pass


def generate(
    root: Path,
    *,
    check: bool = False,
    force: bool = False,
    strict: bool = False,
    progress: Callable[[str], None] = _silent,
) -> Result:
    """Regenerate the output directory from the buf module at `root`.

    With `check`, nothing is written: the result's `drift` tells how the output differs from a
    fresh generation. Without `force`, a run whose inputs and toolchain match the output's
    manifest does nothing.
    """
    config = config_mod.load(root)
    sources = image_mod.discover(config)
    fingerprint = output.fingerprint(config, sources)
    if not check and not force and output.up_to_date(config.output, fingerprint):
        return Result("unchanged", 0, _package_names(config))

    with output.workspace(config) as work:
        progress(f"compiling {len(sources)} proto files")
        image = image_mod.compile_image(config, work)
        excluded = inspect.exclusions(config, image)
        warnings = tuple(
            f"{config.rel(config.module)}/{path}: left out of flavour {key!r}: {why}"
            for key, reasons in excluded.items()
            for path, why in sorted(reasons.items())
        )
        if strict and warnings:
            raise PipelineError(
                "--strict: files would be left out of a flavour:\n"
                + "\n".join("  " + w for w in warnings)
            )
        progress("running generators: " + ", ".join(f.key for f in config.flavours))
        generated = generate_mod.run(
            config, image, work / "gen", {k: frozenset(v) for k, v in excluded.items()}
        )
        progress("packaging")
        previous = config.output if config.output.is_dir() else None
        tree = package.build(config, image, generated, previous, excluded)
        tree[output.MANIFEST] = output.manifest(tree, fingerprint)
        stage = work / "stage"
        output.write_tree(stage, tree, previous)
        progress("importing every generated module")
        verify.import_all(config, stage)
        if check:
            return Result(
                "checked",
                len(tree),
                _package_names(config),
                warnings,
                output.compare(config.output, {k: v for k, v in tree.items() if k != output.MANIFEST}, ignore=(output.MANIFEST,)),
            )
        output.swap(stage, config.output, work / "previous")
    return Result("generated", len(tree), _package_names(config), warnings)


def _package_names(config: config_mod.Config) -> tuple[str, ...]:
    return (config.name, *(f.distribution for f in config.flavours))

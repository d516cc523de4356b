"""`generate`: the stages in order. Each stage is a module; this only sequences them.

    config --> image (compile once) --> inspect (what each flavour takes)
           --> generate (buf generate per plugin) --> package (trees, pyproject, README)
           --> verify (import everything) --> swap into the output directory

When a plugin fails, writes invalid Python, or its code fails to import, the files at fault are
found and the run repeats without them: a fallback generator stands in where one exists,
otherwise the files are left out of that flavour with a warning. Only failures that cannot be
tied to files stop the run.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from protoship import config as config_mod
from protoship import generate as gen
from protoship import image as image_mod
from protoship import inspect, output, package, verify
from protoship.cache import RunCache
from protoship.errors import PipelineError

# Each round attributes at least one failure to files, or the run stops.
_MAX_ROUNDS = 8


@dataclass(frozen=True)
class Result:
    status: str  # "generated", "unchanged" or "checked"
    files: int
    packages: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    drift: output.Drift | None = None
    # {flavour key: {module path: reason}}: files left out of a flavour.
    excluded: dict[str, dict[str, str]] = field(default_factory=dict)
    # {flavour key: {module path: reason}}: files a fallback generator handled.
    fallback: dict[str, dict[str, str]] = field(default_factory=dict)


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
    manifest does nothing. With `strict`, leaving any file out of a flavour is an error.
    """
    config = config_mod.load(root)
    sources = image_mod.discover(config)
    fingerprint = output.fingerprint(config, sources)
    if not check and not force and output.up_to_date(config.output, fingerprint):
        return Result("unchanged", 0, _package_names(config))

    with output.workspace(config) as work:
        progress(f"compiling {len(sources)} proto files")
        image = image_mod.compile_image(config, work)
        plan = gen.Plan(inspect.exclusions(config, image))
        # Earlier runs' plugin outputs, reused where a run's request is unchanged; --force
        # runs every plugin again.
        runs = RunCache(config.root / ".protoship" / "cache", read=not force)
        previous = config.output if config.output.is_dir() else None
        for attempt in range(_MAX_ROUNDS):
            _refuse_if_strict(config, plan, strict)
            progress("running generators" + (f" (round {attempt + 1})" if attempt else ""))
            checked = work / f"verify{attempt}"
            # Each flavour's modules are imported as soon as its generators are done, while
            # the other flavours' generators still run.
            # One thread per flavour for its import check, one more for packaging flavours that
            # are complete while others still generate.
            with ThreadPoolExecutor(max_workers=len(config.flavours) + 1) as checker:
                checks: list[Future[list[verify.ImportFailure]]] = []
                packed: dict[str, Future[dict[str, bytes]]] = {}
                excluded_now = {k: dict(v) for k, v in plan.excluded.items()}

                def pack(
                    flavour: config_mod.Flavour,
                    files: list[gen.Generated],
                    packed: dict[str, Future[dict[str, bytes]]] = packed,
                    excluded: dict[str, dict[str, str]] = excluded_now,
                ) -> None:
                    packed[flavour.key] = checker.submit(
                        package.flavour_tree, config, flavour, image, files, previous, excluded
                    )

                def start_check(
                    flavour: config_mod.Flavour,
                    files: list[gen.Generated],
                    checks: list[Future[list[verify.ImportFailure]]] = checks,
                    root: Path = checked,
                ) -> None:
                    checks.append(
                        checker.submit(
                            verify.check_generated, flavour, files, root / flavour.key, image
                        )
                    )

                try:
                    generated = gen.run(
                        config,
                        image,
                        plan.jobs(config, image),
                        work / f"gen{attempt}",
                        on_flavour=start_check,
                        on_complete=pack,
                        cache=runs,
                    )
                except gen.PluginFailed as failure:
                    progress(
                        f"plugin {failure.job.plugin.label} failed; finding the files at fault"
                    )
                    _attribute(config, image, plan, failure, work / f"isolate{attempt}")
                    continue
                progress("packaging")
                tree = package.build(
                    config,
                    image,
                    generated,
                    previous,
                    plan.excluded,
                    ready={key: done.result() for key, done in packed.items()},
                )
                tree[output.MANIFEST] = output.manifest(tree, fingerprint)
                stage = work / f"stage{attempt}"
                output.write_tree(stage, tree, previous)
                progress("importing every generated module")
                failures = [failure for done in checks for failure in done.result()]
            if not failures:
                break
            _exclude_unimportable(config, image, plan, failures)
        else:
            raise PipelineError(f"gave up after {_MAX_ROUNDS} rounds of leaving files out")

        warnings = _warnings(config, plan)
        fallback = plan.fallbacks_kept()
        drift = None
        if check:
            drift = output.compare(
                config.output,
                {k: v for k, v in tree.items() if k != output.MANIFEST},
                ignore=(output.MANIFEST,),
            )
        else:
            output.swap(stage, config.output, work / "previous")
        runs.keep_only_used()
    excluded = {k: v for k, v in plan.excluded.items() if v}
    return Result(
        "checked" if check else "generated",
        len(tree),
        _package_names(config),
        warnings,
        drift,
        excluded,
        fallback,
    )


def _attribute(
    config: config_mod.Config,
    image: image_mod.Image,
    plan: gen.Plan,
    failure: gen.PluginFailed,
    workdir: Path,
) -> None:
    """Tie a plugin failure to files and change the plan so the next round avoids them."""
    job = failure.job
    culprits = (
        {path: failure.detail for path in failure.sources}
        if failure.sources
        else gen.isolate(config, image, job, workdir)
    )
    everything = (
        not failure.sources
        and job.replaces is None
        and job.scope is None
        and len(culprits) == len(job.paths(image))
    )
    if not culprits or everything:
        # A crash on nothing in particular, or on every file, is the plugin's problem, not
        # the files': leaving files out would only hide it.
        raise failure
    label = job.plugin.label
    fallback = gen.fallback_spec(job.flavour, job.plugin) if job.replaces is None else None
    key = job.flavour.key
    if fallback is not None:
        standin = plan.fallback.setdefault((key, job.plugin.line), {})
        for path, message in culprits.items():
            standin[path] = f"{label} failed ({_one_line(message)}); used protoc builtin " + str(
                fallback["protoc_builtin"]
            )
        return
    excluded = plan.excluded.setdefault(key, {})
    for path, message in culprits.items():
        if job.replaces is not None:
            excluded[path] = (
                f"{job.replaces.label} failed and the fallback {label} failed too "
                f"({_one_line(message)})"
            )
        else:
            excluded[path] = f"{label} failed: {_one_line(message)}"
    inspect.close_over_importers(image, excluded)


def _exclude_unimportable(
    config: config_mod.Config,
    image: image_mod.Image,
    plan: gen.Plan,
    failures: list[verify.ImportFailure],
) -> None:
    progressed = False
    for failure in failures:
        sources = [s for s in image.sources_of(failure.file) if s.provider is None]
        excluded = plan.excluded.setdefault(failure.flavour.key, {})
        for source in sources:
            if source.path not in excluded:
                excluded[source.path] = f"generated module {failure.module} fails to import: " + (
                    _one_line(failure.message)
                )
                progressed = True
        inspect.close_over_importers(image, excluded)
    if not progressed:
        raise PipelineError(
            "generated code fails to import; packages/ was left as it was:\n"
            + "\n".join(f"  {f.flavour.key}: {f.module}: {f.message}" for f in failures)
        )


def _one_line(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 else "; ".join(lines[-2:])


def _warnings(config: config_mod.Config, plan: gen.Plan) -> tuple[str, ...]:
    module = config.rel(config.module)
    found = [
        f"{module}/{path}: left out of flavour {key!r}: {why}"
        for key, reasons in plan.excluded.items()
        for path, why in sorted(reasons.items())
    ]
    found += [
        f"{module}/{path}: flavour {key!r}: {why}"
        for key, reasons in plan.fallbacks_kept().items()
        for path, why in reasons.items()
    ]
    return tuple(found)


def _refuse_if_strict(config: config_mod.Config, plan: gen.Plan, strict: bool) -> None:
    warnings = _warnings(config, plan)
    if strict and warnings:
        raise PipelineError(
            "--strict: files would be left out of a flavour or need a fallback:\n"
            + "\n".join("  " + w for w in warnings)
        )


def _package_names(config: config_mod.Config) -> tuple[str, ...]:
    return (config.name, *(f.distribution for f in config.flavours))

"""Run the generators declared in buf.gen.yaml over the image: one `buf generate` per plugin.

One run per plugin (all in parallel; buf and the plugins are separate processes) means every
output file is attributed to exactly one plugin, a file can be taken away from one plugin
without touching the others, and a fallback generator can stand in for one plugin on a few
files. Two plugins writing the same file is an error, not a silent overwrite.

A large tree is split into parts (whole proto packages and directories, a few MB of descriptors
each), and each plugin runs once per part on an image holding just that part and what it
imports: memory stays bounded by the part, not the tree, and every core has work.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from protoship import toolchain
from protoship.cache import RunCache
from protoship.config import Config, Flavour, Plugin
from protoship.errors import PipelineError
from protoship.image import Image

# Generators that can stand in for a plugin on the files it fails on. protoc's own pyi
# generator covers the same ground as mypy-protobuf's message stubs, with plainer types.
FALLBACKS: dict[str, dict[str, Any]] = {
    "protoc-gen-mypy": {"protoc_builtin": "pyi"},
}
_DEFAULT_PROTOC = ["python", "-m", "grpc_tools.protoc"]


@dataclass(frozen=True)
class Reads:
    """What a generator reads of a request, beyond the files it generates."""

    # How much source info (image.SOURCE_INFO_LEVELS): comments and positions.
    source_info: str = "all"
    # How much of the imported files (image.IMPORT_LEVELS): generators that resolve type
    # names from the request, without building a descriptor pool as protoc does, need only
    # the files their files import themselves ("direct"), or only their names ("hollow").
    imports: str = "all"
    # gRPC stub generators write a module for every file; for a file without services it
    # only imports grpc, and packaging drops it (package._layout, proto-native layout): such
    # files are not given to them at all.
    services_only: bool = False
    # Writes only .pyi stubs: a flavour's modules can be import-checked before it is done.
    stubs_only: bool = False


# Generators known to read less than everything. Less to decode makes buf and the plugin
# faster and smaller, and a part of a split tree then carries only its neighbours, not every
# package below it. protoc's python generator embeds descriptors without source info; gRPC stub
# generators read only the comments of services, methods and the file. Output is byte-identical
# to a run on the full request (tested).
READS: dict[tuple[str, str], Reads] = {
    ("protoc_builtin", "python"): Reads(source_info="none"),
    ("local", "protoc-gen-grpc_python"): Reads(source_info="services", services_only=True),
    ("protoc_builtin", "pyi"): Reads(stubs_only=True),
    ("local", "protoc-gen-mypy"): Reads(imports="direct", stubs_only=True),
    ("local", "protoc-gen-mypy_grpc"): Reads(
        source_info="services", imports="direct", services_only=True, stubs_only=True
    ),
    # betterproto2 builds models of every file in the request (not only of those it is asked
    # to generate), and looks at an imported message only by name and to see whether it has
    # fields.
    ("local", "protoc-gen-python_betterproto2"): Reads(imports="hollow"),
    ("local", "protoc-gen-python_betterproto2_fast"): Reads(imports="hollow"),
}

# Descriptor bytes (at the level the plugin reads) per run of a plugin. Memory of buf and of a
# plugin grows with the request (about 50x its serialized size for Python plugins): a part of
# this size keeps each run to a few hundred MB, while each run's start-up stays small beside
# its work.
PART_BYTES = 12_000_000
# The environment variable that tells a plugin how many processes of its own it may use
# (protoship's betterproto2 driver forks workers); set to 1 when runs already fill the cores.
PROCESSES_ENV = "PROTOSHIP_PLUGIN_PROCESSES"
# The environment variable naming a file that lists the proto packages whose modules a run's
# caller discards (see _belongs): a plugin may leave them empty. protoship's betterproto2 driver
# does; any other plugin simply writes them.
DISCARD_ENV = "PROTOSHIP_PLUGIN_DISCARD"
_NICE = shutil.which("nice")


@dataclass(frozen=True)
class Generated:
    """One generated file, before packaging."""

    path: str  # relative to the flavour's output root, posix
    content: bytes
    plugin: Plugin
    # Where the plugin wrote it, while the run's scratch space lives.
    source: Path | None = None


@dataclass(frozen=True)
class Job:
    """One plugin over the image: all module files but `exclude`, or just `only`."""

    flavour: Flavour
    plugin: Plugin
    exclude: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    # Set when this job stands in for another plugin on the files in `only`.
    replaces: Plugin | None = None
    # Set when this job is one part of a split run: all the files of the whole run.
    scope: frozenset[str] | None = None

    def paths(self, image: Image) -> list[str]:
        if self.only is not None:
            return sorted(self.only)
        skip = self.reads.services_only and self.flavour.layout == "proto-native"
        return [
            f.path
            for f in image.files
            if f.path not in self.exclude and (f.has_services or not skip)
        ]

    @property
    def family(self) -> tuple[str, int, str]:
        """Jobs of one family are parts of one plugin run."""
        return (self.flavour.key, self.plugin.line, self.plugin.label)

    @property
    def reads(self) -> Reads:
        return READS.get(self._identity, Reads())

    @property
    def known(self) -> bool:
        """Whether the generator is one protoship knows (READS), whose code the toolchain
        fingerprint covers: only those runs are cached."""
        return self._identity in READS

    @property
    def _identity(self) -> tuple[str, str]:
        for key in ("protoc_builtin", "local"):
            if key in self.plugin.spec:
                return (key, str(self.plugin.spec[key]))
        return ("", "")

    def parts(self, image: Image) -> list[Job]:
        """This job split into parts of about PART_BYTES of descriptors; itself if small, or
        if the plugin asks to see every file at once (`strategy: all` in buf.gen.yaml)."""
        paths = self.paths(image)
        total = image.size(paths, self.reads.source_info)
        count = -(-total // PART_BYTES)
        if count < 2 or self.plugin.spec.get("strategy") == "all":
            return [self]
        scope = frozenset(paths)
        return [
            replace(self, only=frozenset(part), scope=scope)
            for part in split(image, paths, count, self.reads.source_info)
        ]


def split(image: Image, paths: Sequence[str], count: int, source_info: str) -> list[list[str]]:
    """`paths` in at most `count` parts of similar descriptor size. Files that share a proto
    package or a directory stay together: generators that write a module per package (or run
    per directory, buf's default strategy) see all of its files in one run."""
    package_of = {f.path: f.package for f in image.files}
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for path in paths:
        for key in ("pkg:" + package_of[path], "dir:" + path.rpartition("/")[0]):
            parent[root(key)] = root("file:" + path)
    units: dict[str, list[str]] = {}
    for path in paths:
        units.setdefault(root("file:" + path), []).append(path)
    parts: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    # Largest unit first onto the lightest part; ties by name, so the split is reproducible.
    sized = sorted(
        ((image.size(unit, source_info), sorted(unit)) for unit in units.values()),
        key=lambda item: (-item[0], item[1]),
    )
    for size, unit in sized:
        lightest = loads.index(min(loads))
        parts[lightest] += unit
        loads[lightest] += size
    return [sorted(part) for part in parts if part]


class PluginFailed(PipelineError):
    """A plugin exited non-zero or wrote something that is not valid Python."""

    def __init__(self, config: Config, job: Job, message: str, sources: Sequence[str] = ()):
        self.job = job
        self.detail = message
        self.sources = tuple(sources)
        where = f"{config.buf_gen_yaml.name}:{job.plugin.line}: plugin {job.plugin.label}"
        files = f" on {', '.join(sources)}" if sources else ""
        super().__init__(
            f"{where} failed{files} while generating flavour {job.flavour.key!r}:\n"
            + "\n".join("  " + line for line in message.splitlines())
        )


@dataclass
class Plan:
    """Which files each plugin takes. Grows as failures are attributed to files."""

    # flavour key -> {module path: reason it is left out of the flavour}
    excluded: dict[str, dict[str, str]]
    # (flavour key, plugin line) -> {module path: reason the fallback stands in}
    fallback: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)

    def fallbacks_kept(self) -> dict[str, dict[str, str]]:
        """{flavour key: {path: reason}} for files a fallback handled that are still in the
        flavour (a file left out later needs no fallback report)."""
        kept: dict[str, dict[str, str]] = {}
        for (key, _), reasons in sorted(self.fallback.items()):
            gone = self.excluded.get(key, {})
            for path, why in sorted(reasons.items()):
                if path not in gone:
                    kept.setdefault(key, {})[path] = why
        return kept

    def jobs(self, config: Config, image: Image) -> list[Job]:
        jobs = []
        for flavour in config.flavours:
            out = frozenset(self.excluded.get(flavour.key, {}))
            if len(out) >= len(image.files):
                continue
            for plugin in flavour.plugins:
                standin = self.fallback.get((flavour.key, plugin.line), {})
                jobs.append(Job(flavour, plugin, out | frozenset(standin)))
                if standin:
                    spec = fallback_spec(flavour, plugin)
                    assert spec is not None
                    jobs.append(
                        Job(
                            flavour,
                            Plugin(spec, plugin.line),
                            only=frozenset(standin) - out,
                            replaces=plugin,
                        )
                    )
        return [part for job in jobs if job.paths(image) for part in job.parts(image)]


def fallback_spec(flavour: Flavour, plugin: Plugin) -> dict[str, Any] | None:
    spec = FALLBACKS.get(str(plugin.spec.get("local")))
    if spec is None:
        return None
    protoc = next(
        (p.spec["protoc_path"] for p in flavour.plugins if "protoc_path" in p.spec),
        _DEFAULT_PROTOC,
    )
    return {**spec, "protoc_path": protoc, "out": plugin.spec["out"]}


def run(
    config: Config,
    image: Image,
    jobs: list[Job],
    workdir: Path,
    *,
    on_flavour: Callable[[Flavour, list[Generated]], None] | None = None,
    on_complete: Callable[[Flavour, list[Generated]], None] | None = None,
    cache: RunCache | None = None,
) -> dict[str, list[Generated]]:
    """Run every job; returns the files per flavour key, sorted by path. Raises PluginFailed
    for the first job (in declaration order) that fails or writes invalid Python.

    `on_flavour` is called, from this thread, as soon as all of one flavour's jobs that may
    write modules have succeeded (stub generators may still run), with the files so far, while
    other jobs still run: later stages can start on it early. It is called again if a later
    job of the flavour writes modules after all. `on_complete` is called, from this thread,
    with a flavour's final files once all its jobs have succeeded."""
    buf = toolchain.buf_executable()
    cores = os.cpu_count() or 1
    # One job per core: each holds its request decoded, and on a busy machine more jobs than
    # cores only add memory, not speed. When the jobs alone fill the cores, plugins must not
    # fork workers of their own.
    workers = max(1, min(len(jobs), cores))
    env = toolchain.tool_env()
    if len(jobs) >= cores:
        env[PROCESSES_ENV] = "1"
    per_key = Counter(job.flavour.key for job in jobs)
    # Flavours with fewest jobs first, so that one finishes early and its checks overlap the
    # remaining generation.
    order = sorted(range(len(jobs)), key=lambda i: (per_key[jobs[i].flavour.key], i))
    results: list[list[Generated] | str | None] = [None] * len(jobs)
    remaining = Counter(per_key)
    # Jobs that may write code (not only stubs, see Reads.stubs_only) still to finish.
    code = Counter(job.flavour.key for job in jobs if not job.reads.stubs_only)
    handed: dict[str, set[str]] = {}  # flavour key -> the modules handed to on_flavour
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(_run_job, config, buf, image, jobs[i], workdir / str(i), env, cache): i
            for i in order
        }
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            key = jobs[index].flavour.key
            remaining[key] -= 1
            if not jobs[index].reads.stubs_only:
                code[key] -= 1
            if code[key] > 0 or (on_flavour is None and on_complete is None):
                continue
            done = [
                i for i, job in enumerate(jobs) if job.flavour.key == key and results[i] is not None
            ]
            try:
                merged = _merge(config, image, [jobs[i] for i in done], [results[i] for i in done])
            except PipelineError:
                continue  # reported below, in declaration order
            files = merged.get(key, [])
            modules = {g.path for g in files if g.path.endswith(".py")}
            # Once all its code is written, a flavour's modules can be imported while stub
            # generators still run; again at the end only if a stub generator wrote code.
            if on_flavour is not None and (key not in handed or modules - handed[key]):
                handed[key] = modules
                on_flavour(jobs[index].flavour, files)
            if on_complete is not None and not remaining[key]:
                on_complete(jobs[index].flavour, files)
    return _merge(config, image, jobs, results)


def _merge(
    config: Config,
    image: Image,
    jobs: Sequence[Job],
    results: Sequence[list[Generated] | str | None],
) -> dict[str, list[Generated]]:
    failed = Counter(
        job.family for job, result in zip(jobs, results, strict=True) if isinstance(result, str)
    )
    runs = Counter(job.family for job in jobs)
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, str):
            if job.scope is not None and failed[job.family] == runs[job.family]:
                # Every part failed: the plugin's failure, not one part's files.
                raise PluginFailed(config, replace(job, only=job.scope, scope=None), result)
            raise PluginFailed(config, job, result)
    per_flavour: dict[str, dict[str, Generated]] = {f.key: {} for f in config.flavours}
    for job, result in zip(jobs, results, strict=True):
        assert isinstance(result, list)
        mine = set(job.paths(image))
        given = [g for g in result if job.scope is None or _belongs(image, g.path, mine)]
        bad = invalid_python(g for g in given if _suspect(image, g.path))
        if bad:
            sources = sorted({s.path for g, _ in bad for s in image.sources_of(g.path)})
            raise PluginFailed(config, job, "\n".join(msg for _, msg in bad), sources)
        files = per_flavour[job.flavour.key]
        for gen in given:
            if gen.path in files:
                other = files[gen.path].plugin
                if other != job.plugin:
                    raise PipelineError(
                        f"{config.buf_gen_yaml.name}:{job.plugin.line}: plugin {job.plugin.label} "
                        f"and plugin {other.label} (line {other.line}) both write {gen.path} in "
                        f"flavour {job.flavour.key!r}; give one of them other options"
                    )
                if files[gen.path].content != gen.content:
                    raise PipelineError(
                        f"{config.buf_gen_yaml.name}:{job.plugin.line}: plugin {job.plugin.label} "
                        f"writes {gen.path} differently depending on which files it is given, "
                        "so protoship cannot split its run; add `strategy: all` to it in "
                        f"{config.buf_gen_yaml.name} so that it sees every file at once"
                    )
                continue
            files[gen.path] = gen
    return {key: [files[p] for p in sorted(files)] for key, files in per_flavour.items()}


def _belongs(image: Image, generated: str, paths: set[str]) -> bool:
    """Whether a file from one part of a split run is that part's to give: it comes from one
    of the part's files, or from no module file at all (an outside package, an empty parent
    `__init__.py`). A per-package generator also writes partial modules for the packages the
    part only imports; the part that holds those packages gives them."""
    own = [s.path for s in image.sources_of(generated) if s.provider is None]
    return not own or any(path in paths for path in own)


# Bisection needs about 2·k·log2(n) runs for k failing files among n; past this many runs the
# failure is not about a few files (or the plugin is broken) and isolating it would take longer
# than it helps.
_ISOLATION_BUDGET = 40


def isolate(config: Config, image: Image, job: Job, workdir: Path) -> dict[str, str]:
    """The files a failing job fails on, each with the plugin's own message, by bisection.
    Empty when the failure cannot be tied to a few files within the budget."""
    buf = toolchain.buf_executable()
    counter = iter(range(_ISOLATION_BUDGET))

    def failures(paths: list[str]) -> dict[str, str]:
        trial = Job(job.flavour, job.plugin, only=frozenset(paths), replaces=job.replaces)
        result = _run_job(
            config, buf, image, trial, workdir / f"isolate-{next(counter)}", toolchain.tool_env()
        )
        if not isinstance(result, str):
            bad = invalid_python(result)
            if not bad:
                return {}
            if len(paths) == 1:
                return {paths[0]: bad[0][1]}
        elif len(paths) == 1:
            return {paths[0]: _essence(result)}
        half = len(paths) // 2
        return {**failures(paths[:half]), **failures(paths[half:])}

    try:
        return failures(job.paths(image))
    except StopIteration:
        return {}


def _suspect(image: Image, path: str) -> bool:
    """Whether a stub could be invalid Python. Parsing every stub of a large tree costs more
    than all the plugins together; the stubs the generators break are those of files that
    declare names that are Python keywords (mypy-protobuf and protoc's pyi write `class class`)."""
    return any("python-keywords" in s.features for s in image.sources_of(path))


def invalid_python(files: Iterable[Generated]) -> list[tuple[Generated, str]]:
    """Generated stubs that do not even parse. (Modules are imported later, which finds the
    same errors and more; stubs are only read by type checkers, so they are parsed here, where
    a fallback generator can still stand in for the plugin that wrote them.)"""
    bad = []
    for gen in files:
        if gen.path.endswith(".pyi"):
            try:
                ast.parse(gen.content, filename=gen.path)
            except SyntaxError as exc:
                bad.append((gen, f"{gen.path}:{exc.lineno}: invalid Python: {exc.msg}"))
    return bad


def _template(plugin: Plugin) -> dict[str, Any]:
    # buf's default strategy runs a plugin once per directory: with Python plugins that is one
    # interpreter start-up per proto package. Python generators write each file independently
    # of the others, so one run over the whole tree gives the same files, many times faster.
    # An explicit `strategy:` in buf.gen.yaml still wins.
    return {"version": "v2", "plugins": [{"strategy": "all", **plugin.spec, "out": "out"}]}


def _run_job(  # noqa: PLR0917 (one call site per caller, all positional)
    config: Config,
    buf: str,
    image: Image,
    job: Job,
    workdir: Path,
    env: dict[str, str],
    cache: RunCache | None = None,
) -> list[Generated] | str:
    """The job's files, or the plugin's error message."""
    workdir.mkdir(parents=True)
    template = workdir / "buf.gen.yaml"
    template_text = yaml.safe_dump(_template(job.plugin), sort_keys=False)
    template.write_text(template_text, encoding="utf-8")
    # The job's own image: its files (the only ones not marked as imports) and their imports.
    request = image.request(
        job.paths(image),
        source_info=job.reads.source_info,
        imports=job.reads.imports,
        scope=job.scope or (),
    )
    (workdir / "image.binpb").write_bytes(request)
    discard = b""
    if job.scope is not None:
        listing = _discard_list(image, job, workdir / "discard.txt")
        env = {**env, DISCARD_ENV: str(listing)}
        discard = listing.read_bytes()
    key = None
    if cache is not None and job.known:
        key = cache.key(request, template_text.encode(), discard)
        hit = cache.get(key)
        if hit is not None:
            return _collect(hit, job.plugin)
    args = [buf, "generate", "image.binpb", "--template", str(template), "--output", str(workdir)]
    if _NICE is not None:
        # Below the import checks, which start as soon as a flavour is done and which every
        # later stage waits for: the generators fill whatever CPU the checks leave.
        args = [_NICE, "-n", "5", *args]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, cwd=workdir)
    if proc.returncode != 0:
        return _essence(proc.stderr)
    root = workdir / "out"
    if not root.is_dir():
        return []
    if key is not None and cache is not None:
        root = cache.put(key, root)
    return _collect(root, job.plugin)


def _collect(root: Path, plugin: Plugin) -> list[Generated]:
    return [
        Generated(path.relative_to(root).as_posix(), path.read_bytes(), plugin, path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]


def _discard_list(image: Image, job: Job, path: Path) -> Path:
    """Write the packages of the module files a part imports but does not hold."""
    mine = set(job.paths(image))
    read = image.closure(mine, direct=job.reads.imports != "all")
    held = {f.package for f in image.files if f.path in mine}
    imported = {f.package for f in image.files if f.path in read}
    path.write_text("".join(f"{p}\n" for p in sorted(imported - held)), encoding="utf-8")
    return path


def _essence(stderr: str) -> str:
    """A plugin's message without its traceback or progress chatter: the last lines that say
    what went wrong, and buf's own summary."""
    # "Writing x.pyi" is mypy-protobuf's and betterproto2's progress output, never the error.
    lines = [
        line.rstrip()
        for line in stderr.strip().splitlines()
        if line.strip() and not line.startswith("Writing ")
    ]
    if any(line.startswith("Traceback") for line in lines):
        tail = [ln for ln in lines if not ln.startswith((" ", "\t", "Traceback"))]
        return "\n".join(tail[-3:])
    return "\n".join(lines[-5:])

"""`nox -s bench`: how long `generate` takes, and how much memory, against what it must beat.

For each corpus (a synthetic tree, the same tree at a quarter of the size for the scaling
figure, and the .proto files googleapis-common-protos ships), a temporary project is made from
the repository's buf.yaml, buf.gen.yaml and pyproject.toml with the corpus as its proto/ module,
and each of these runs as its own process, timed and watched:

    full         `python -m protoship generate --force` (both flavours, packaging, verify)
    noop         `python -m protoship generate` right after: nothing changed
    incremental  one file's comment edited, then `python -m protoship generate`
    baseline     protoc's python, pyi and grpc generators only, same files and include paths
    stock/fast   the stock betterproto2 plugin, then protoship's fast driver, each alone:
                 `buf generate` on the same image with a one-plugin template (strategy: all)

`generate` and the baseline run twice each time: once timed alone, once watched by the memory
sampler below (on a 2-core machine its /proc reads take a few percent of the CPU the measured
processes could use); the time reported is the unwatched run's, the memory the watched one's.

Memory is the peak of the whole process tree (protoship, buf, every plugin and ruff), sampled
from /proc: resident size (RSS) summed every 50 ms, with the largest single process and which
commands held the memory at the peak; and proportional set size (PSS), which splits pages that
processes share between them, summed as often as the 50 ms samples allow while reading it takes
at most a tenth of the time (it makes the kernel walk page tables: ~20 ms per GiB, so about
once a second for a tree of several GiB, every sample for small ones). PSS is the figure
reported and judged:
summed RSS counts the pages a forked worker pool shares with its parent once per worker
(protoship's betterproto2 driver forks one per core), so it errs high. A process that lives
less than 50 ms may be missed. Not `ru_maxrss` (`getrusage(RUSAGE_CHILDREN)`,
`wait4`, `/usr/bin/time -v`): it is the largest single process, not the sum of buf and the
plugins running side by side, and on Linux a child's figure starts from its parent's resident
size when it execs, so it would report the bench's own memory for every short run. It is only
the fallback where there is no /proc.

The bench asserts nothing: it prints each target of issue 5 beside the measured value.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protoship import config as config_mod
from protoship import image as image_mod
from protoship import toolchain
from protoship.bench.corpus import write_corpus

SCHEMA = 1
_MIB = 1024 * 1024
_SAMPLE_SECONDS = 0.05
_PROC = Path("/proc")
# Reading PSS costs the kernel a page-table walk (~20 ms per GiB resident): it is read when the
# time since the last read is at least this many times what that read took.
_PSS_BUDGET = 10
_PROJECT_FILES = ("buf.yaml", "buf.gen.yaml", "pyproject.toml")
_STOCK = "protoc-gen-python_betterproto2"
_FAST = "protoc-gen-python_betterproto2_fast"
# The memory target is stated for the 2,447-file googleapis slice.
_MEMORY_SCALE_FILES = 2447
_PROGRESS = re.compile(r"^protoship: \[\s*(?P<at>[\d.]+)s\] (?P<stage>.*?)\.\.\.$")
_TOOK = re.compile(r"\((?:\d+ files, )?(?P<took>[\d.]+)s\)$")


@dataclass
class Run:
    """One measured process: wall time, memory, and for `generate` its stage times."""

    seconds: float
    peak_rss_mib: float  # whole process tree, sampled and summed
    # The same with shared pages split between their sharers (forked workers share most of
    # their memory with their parent), sampled once a second.
    peak_pss_mib: float
    max_process_rss_mib: float  # largest single process
    sampler_cpu_seconds: float  # what measuring memory cost, on the bench's own process
    returncode: int
    # When the sampled peak happened, and which commands held the memory then (MiB by name).
    peak_at_seconds: float = 0.0
    peak_processes: dict[str, int] = field(default_factory=dict)
    # `generate` only: seconds per stage as printed by `-v` ("startup" is interpreter and
    # imports; "setup" is config, discovery and fingerprint, before the first stage).
    stages: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    error: str = ""

    @property
    def memory_mib(self) -> float:
        """The figure reported: PSS where it was sampled, else resident size."""
        return self.peak_pss_mib or self.peak_rss_mib


@dataclass
class Corpus:
    name: str
    files: int
    params: dict[str, Any]
    runs: dict[str, Run] = field(default_factory=dict)
    identical: bool | None = None  # stock and fast betterproto output, byte for byte
    incremental_file: str = ""


# --- measuring --------------------------------------------------------------------------------


def _proc_tree_rss(root: int, page: int) -> dict[int, tuple[str, int]]:
    """{pid: (command name, resident bytes)} of `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:  # noqa: PTH123 (hot loop)
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields resume after the last ")".
        head, _, rest = stat.rpartition(b")")
        pid = int(entry.name)
        children.setdefault(int(rest.split()[1]), []).append(pid)
        names[pid] = head.partition(b"(")[2].decode(errors="replace")
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:  # noqa: PTH123
                found[pid] = (names.get(pid, "?"), int(f.read().split()[1]) * page)
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(children.get(pid, ()))
    return found


def _pss(pids: Sequence[int]) -> int:
    """Proportional set size of `pids`, summed: shared pages split between their sharers."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:  # noqa: PTH123
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return total


class _Sampler(threading.Thread):
    """Samples a process tree's memory until stopped; keeps the peak and who held it."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start_time = time.perf_counter()
        self.stopped = threading.Event()
        self.peak = self.largest = self.peak_pss = 0
        self.peak_at = 0.0
        self.peak_by_name: dict[str, float] = {}
        self.pss_done = self.pss_cost = 0.0
        self.cpu_seconds = 0.0
        self.take()

    def take(self) -> None:
        tree = _proc_tree_rss(self.pid, self.page)
        self.largest = max([self.largest, *(rss for _, rss in tree.values())])
        total = sum(rss for _, rss in tree.values())
        # PSS as often as it costs at most a tenth of the time between reads.
        now = time.perf_counter()
        if now - self.pss_done >= _PSS_BUDGET * self.pss_cost:
            self.peak_pss = max(self.peak_pss, _pss(list(tree)))
            self.pss_done = time.perf_counter()
            self.pss_cost = self.pss_done - now
        if total > self.peak:
            self.peak, self.peak_at = total, time.perf_counter() - self.start_time
            counts = Counter(name for name, _ in tree.values())
            by_name: dict[str, float] = {}
            for name, rss in tree.values():
                key = f"{name} x{counts[name]}"
                by_name[key] = by_name.get(key, 0.0) + rss / _MIB
            self.peak_by_name = by_name

    def run(self) -> None:
        while not self.stopped.wait(_SAMPLE_SECONDS):
            self.take()
        self.cpu_seconds = time.thread_time()


def measure(
    command: Sequence[str], cwd: Path, env: dict[str, str], *, sample: bool = True
) -> tuple[Run, str, str]:
    """Run `command` to completion; its Run, stdout and stderr. Without `sample`, only the
    time: no memory figures, and no sampler competing with the command for the CPU."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        sampler = _Sampler(proc.pid) if _PROC.is_dir() and sample else None
        if sampler is not None:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if sampler is not None:
            sampler.stopped.set()
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    pss, sampler_cpu = 0, 0.0
    if sampler is not None:
        peak, largest = sampler.peak, sampler.largest
        peak_at, by_name = sampler.peak_at, sampler.peak_by_name
        pss, sampler_cpu = sampler.peak_pss, sampler.cpu_seconds
    elif not sample:
        peak = largest = 0
        peak_at, by_name = 0.0, {}
    else:
        # Without /proc: the one figure the OS keeps (KiB on Linux, bytes on macOS), which
        # includes the bench's own memory at spawn time (see the module docstring).
        peak = largest = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        peak_at, by_name = 0.0, {}
    run = Run(
        seconds=seconds,
        peak_rss_mib=peak / _MIB,
        peak_pss_mib=pss / _MIB,
        max_process_rss_mib=largest / _MIB,
        sampler_cpu_seconds=round(sampler_cpu, 3),
        returncode=proc.returncode,
        peak_at_seconds=round(peak_at, 2),
        peak_processes={
            key: round(mib) for key, mib in sorted(by_name.items(), key=lambda kv: -kv[1])
        },
    )
    if proc.returncode != 0:
        run.error = "\n".join((stderr or stdout).strip().splitlines()[-8:])
    return run, stdout, stderr


def _best(runs: list[Run]) -> Run:
    """The fastest of repeated runs, with the memory of the run that used the most (runs
    without the sampler have none)."""
    best = min(runs, key=lambda r: r.seconds)
    heaviest = max(runs, key=lambda r: (r.peak_pss_mib, r.peak_rss_mib))
    best.peak_rss_mib = max(r.peak_rss_mib for r in runs)
    best.max_process_rss_mib = max(r.max_process_rss_mib for r in runs)
    best.peak_pss_mib = max(r.peak_pss_mib for r in runs)
    best.peak_at_seconds = heaviest.peak_at_seconds
    best.peak_processes = heaviest.peak_processes
    best.sampler_cpu_seconds = heaviest.sampler_cpu_seconds
    return best


# --- the measured commands -------------------------------------------------------------------


def _generate(project: Path, *extra: str, sample: bool = True) -> Run:
    command = [sys.executable, "-m", "protoship", "--root", str(project), "generate", "-v", *extra]
    run, stdout, stderr = measure(command, project, toolchain.tool_env(), sample=sample)
    marks = [(float(m["at"]), m["stage"]) for m in map(_PROGRESS.match, stderr.splitlines()) if m]
    lines = stdout.strip().splitlines()
    run.summary = lines[-1] if lines else ""
    took = _TOOK.search(run.summary)
    if took and run.returncode == 0:
        end = float(took["took"])
        run.stages["startup"] = round(max(0.0, run.seconds - end), 3)
        run.stages["setup"] = round(marks[0][0] if marks else end, 3)
        ends = [at for at, _ in marks[1:]] + [end]
        for (at, stage), nxt in zip(marks, ends[: len(marks)], strict=True):
            # Stage labels carry counts ("compiling 2000 proto files"); keep the verb phrase.
            label = re.sub(r"\s*\d+\s*", " ", stage).strip()
            run.stages[label] = round(run.stages.get(label, 0.0) + nxt - at, 3)
    return run


def _baseline(
    config: config_mod.Config, sources: list[str], work: Path, *, sample: bool = True
) -> Run:
    out = work / "baseline"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argfile = work / "baseline.args"
    argfile.write_text("\n".join(sources) + "\n", encoding="utf-8")
    # The include paths the pipeline compiles with (image.compile_image): module first.
    includes = ["-I.", *(f"-I{root.path}" for root in toolchain.include_roots())]
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *includes,
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"@{argfile}",
    ]
    run, _, _ = measure(command, config.module, toolchain.tool_env(), sample=sample)
    return run


def _betterproto_spec(config: config_mod.Config) -> dict[str, Any]:
    for flavour in config.flavours:
        for plugin in flavour.plugins:
            if str(plugin.spec.get("local", "")).startswith(_STOCK):
                return dict(plugin.spec)
    raise SystemExit(f"{config.buf_gen_yaml}: no {_STOCK} plugin to benchmark")


def _plugin_alone(spec: dict[str, Any], plugin: str, image: Path, work: Path) -> Run:
    """One betterproto plugin over the whole image, as the pipeline runs it (one buf
    generate, strategy all), in a directory whose ruff.toml keeps ruff on its defaults."""
    work.mkdir(parents=True)
    (work / "ruff.toml").write_text("")
    # strategy: all, as the pipeline's template gives every plugin (generate._template).
    template = {
        "version": "v2",
        "plugins": [{**spec, "local": plugin, "out": "out", "strategy": "all"}],
    }
    (work / "buf.gen.yaml").write_text(yaml.safe_dump(template, sort_keys=False))
    command = [
        toolchain.buf_executable(),
        "generate",
        str(image),
        "--template",
        str(work / "buf.gen.yaml"),
        "--output",
        str(work),
    ]
    run, _, _ = measure(command, work, toolchain.tool_env())
    return run


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _edit_comment(path: Path) -> None:
    """Change the text of the file's first comment: source info changes, descriptors do not."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.lstrip().startswith("//"):
            lines[i] = line.rstrip("\n") + " (edited by the benchmark)\n"
            break
    else:
        lines.insert(0, "// Edited by the benchmark.\n")
    path.write_text("".join(lines), encoding="utf-8")


# --- corpora ---------------------------------------------------------------------------------


def _project(template: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in _PROJECT_FILES:
        shutil.copy2(template / name, dest / name)
    return dest


def _googleapis_protos(module: Path) -> list[Path]:
    spec = importlib.util.find_spec("google.api")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("googleapis-common-protos is not installed (`--skip-googleapis`)")
    site = Path(next(iter(spec.submodule_search_locations))).resolve().parent.parent
    written = []
    for path in sorted((site / "google").rglob("*.proto")):
        rel = path.relative_to(site)
        if rel.parts[1] == "protobuf":  # the well-known types come from grpcio-tools
            continue
        (module / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, module / rel)
        written.append(module / rel)
    return written


def bench_corpus(
    corpus: Corpus,
    project: Path,
    written: list[Path],
    *,
    repeat: int,
    stock: bool,
    log: Callable[[str], None],
) -> None:
    """Measure every run on the project (whose module is `written`) into `corpus.runs`."""
    config = config_mod.load(project)
    sources = image_mod.discover(config)
    corpus.files = len(sources)
    work = project / ".bench"
    work.mkdir()
    measured: dict[str, list[Run]] = {}

    def record(name: str, run: Run) -> None:
        measured.setdefault(name, []).append(run)
        state = f"exit {run.returncode}" if run.returncode else f"{run.memory_mib:,.0f} MiB"
        if not run.returncode and not run.memory_mib:
            state = "(timed only)"
        log(f"  {corpus.name}: {name:<11} {run.seconds:8.2f}s  {state}")
        if run.error:
            log("    " + run.error.replace("\n", "\n    "))

    # An image exactly like the pipeline's, for the plugins measured alone.
    image = image_mod.compile_image(config, work).path
    spec = _betterproto_spec(config)
    target = written[len(written) // 2]
    corpus.incremental_file = target.relative_to(config.module).as_posix()
    for attempt in range(repeat):
        # generate and the baseline run twice: timed alone, and watched by the memory sampler
        # (whose /proc reads would otherwise take CPU from the runs on a small machine).
        for sample in (False, True):
            record("full", _generate(project, "--force", sample=sample))
            record("noop", _generate(project, sample=sample))
            _edit_comment(target)
            record("incremental", _generate(project, sample=sample))
            record("baseline", _baseline(config, sources, work, sample=sample))
        fast_dir = work / f"fast{attempt}"
        record("fast", _plugin_alone(spec, _FAST, image, fast_dir))
        if stock:
            stock_dir = work / f"stock{attempt}"
            record("stock", _plugin_alone(spec, _STOCK, image, stock_dir))
            corpus.identical = _tree(stock_dir / "out") == _tree(fast_dir / "out")
            shutil.rmtree(stock_dir)
        shutil.rmtree(fast_dir)
    corpus.runs = {name: _best(runs) for name, runs in measured.items()}


# --- report ----------------------------------------------------------------------------------


def _ratio(corpus: Corpus, top: str, bottom: str) -> float | None:
    a, b = corpus.runs.get(top), corpus.runs.get(bottom)
    if a is None or b is None or a.returncode or b.returncode or b.seconds <= 0:
        return None
    return a.seconds / b.seconds


def ratios(corpus: Corpus) -> dict[str, float | None]:
    return {
        "fast_speedup_vs_stock": _ratio(corpus, "stock", "fast"),
        "full_vs_baseline": _ratio(corpus, "full", "baseline"),
        "noop_vs_full": _ratio(corpus, "noop", "full"),
        "incremental_vs_full": _ratio(corpus, "incremental", "full"),
    }


def targets(main: Corpus, small: Corpus | None) -> list[dict[str, Any]]:
    """Issue 5's targets, measured on the main synthetic corpus."""
    r = ratios(main)
    found: list[dict[str, Any]] = []

    def add(name: str, goal: str, value: float | None, shown: str, ok: bool) -> None:
        result = "n/a" if value is None else ("PASS" if ok else "MISS")
        found.append(
            {"target": name, "goal": goal, "measured": value, "shown": shown, "result": result}
        )

    speedup = r["fast_speedup_vs_stock"]
    add(
        "betterproto fast vs stock plugin",
        ">= 4x",
        speedup,
        f"{speedup:.1f}x" if speedup else "n/a",
        speedup is not None and speedup >= 4,
    )
    full = r["full_vs_baseline"]
    add(
        "full generate vs raw protoc baseline",
        "<= 4x",
        full,
        f"{full:.1f}x" if full else "n/a",
        full is not None and full <= 4,
    )
    noop = r["noop_vs_full"]
    add(
        "no-op generate vs full generate",
        "<= 5%",
        noop,
        f"{noop:.1%}" if noop is not None else "n/a",
        noop is not None and noop <= 0.05,
    )
    scaling: float | None = None
    shown = "n/a"
    if small is not None:
        time_ratio = _ratio_between(main, small)
        if time_ratio is not None:
            files_ratio = main.files / small.files
            # Normalised to the 4x step: time ratio per file ratio, times 4.
            scaling = time_ratio / files_ratio * 4
            shown = f"{time_ratio:.2f}x for {files_ratio:.1f}x files"
    add(
        "4x the files (full generate)",
        "<= 4.4x time",
        scaling,
        shown,
        scaling is not None and scaling <= 4.4,
    )
    memory, shown = _memory_at_scale(main, small)
    add(
        "peak memory, full generate, 2,447 files",
        "< 2 GiB",
        memory,
        shown,
        memory is not None and memory < 2048,
    )
    return found


def _memory_at_scale(main: Corpus, small: Corpus | None) -> tuple[float | None, str]:
    """Peak memory of a full generate at the issue's 2,447 files: measured when the main
    corpus is that large, else extended along the line through the two synthetic sizes
    (interpreters and buf are a fixed cost; the descriptors and output grow with the files)."""
    big = main.runs.get("full")
    if big is None or big.returncode:
        return None, "n/a"
    shown = f"{big.memory_mib:,.0f} MiB at {main.files} files"
    if main.files >= _MEMORY_SCALE_FILES:
        return big.memory_mib, shown
    little = small.runs.get("full") if small is not None else None
    if small is None or little is None or little.returncode or small.files >= main.files:
        return big.memory_mib, shown + " (one size: not extended)"
    slope = max(0.0, (big.memory_mib - little.memory_mib) / (main.files - small.files))
    estimate = big.memory_mib + slope * (_MEMORY_SCALE_FILES - main.files)
    return estimate, shown + f"; ~{estimate:,.0f} at {_MEMORY_SCALE_FILES}"


def _ratio_between(big: Corpus, small: Corpus) -> float | None:
    a, b = big.runs.get("full"), small.runs.get("full")
    if a is None or b is None or a.returncode or b.returncode:
        return None
    return a.seconds / b.seconds


_COLUMNS = ("full", "noop", "incremental", "baseline", "stock", "fast")


def table(corpora: list[Corpus], found: list[dict[str, Any]]) -> str:
    def cell(run: Run | None, memory: bool) -> str:
        if run is None:
            return "-"
        if run.returncode:
            return "FAILED"
        return f"{run.memory_mib:,.0f}" if memory else f"{run.seconds:.2f}"

    width = max(len(c.name) for c in corpora) + 2
    lines = ["seconds (peak MiB of the process tree, PSS)"]
    lines.append(f"{'corpus':<{width}}{'files':>6}" + "".join(f"{c:>18}" for c in _COLUMNS))
    for corpus in corpora:
        row = f"{corpus.name:<{width}}{corpus.files:>6}"
        for column in _COLUMNS:
            run = corpus.runs.get(column)
            row += f"{cell(run, False) + ' (' + cell(run, True) + ')':>18}" if run else f"{'-':>18}"
        lines.append(row)
    lines += [
        "",
        f"{'corpus':<{width}}{'fast/stock':>12}{'full/base':>11}{'noop/full':>11}"
        f"{'incr/full':>11}  identical",
    ]
    for corpus in corpora:
        r = ratios(corpus)
        same = {None: "-", True: "yes", False: "NO"}[corpus.identical]
        lines.append(
            f"{corpus.name:<{width}}"
            + "".join(
                f"{(f'{v:.1%}' if 'noop' in k or 'incr' in k else f'{v:.2f}x') if v else '-':>{w}}"
                for (k, v), w in zip(r.items(), (12, 11, 11, 11), strict=True)
            )
            + f"  {same}"
        )
    lines += ["", f"{'target (issue 5)':<42}{'goal':<14}{'measured':<48}result"]
    lines += [f"{t['target']:<42}{t['goal']:<14}{t['shown']:<48}{t['result']}" for t in found]
    return "\n".join(lines)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nox -s bench --",
        description="Time protoship generate against protoc and the stock betterproto2 plugin.",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(),
        help="project whose buf.yaml, buf.gen.yaml, pyproject.toml are used",
    )
    parser.add_argument("--packages", type=int, default=100, help="synthetic packages")
    parser.add_argument("--files", type=int, default=20, help="files per package")
    parser.add_argument("--messages", type=int, default=5, help="messages per file")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; fastest kept")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(".protoship/bench.json"),
        help="where to write the results (default: .protoship/bench.json)",
    )
    parser.add_argument(
        "--skip-googleapis",
        action="store_true",
        help="leave out the googleapis-common-protos corpus",
    )
    parser.add_argument(
        "--skip-scaling",
        action="store_true",
        help="leave out the quarter-size synthetic corpus (no scaling figure)",
    )
    parser.add_argument(
        "--skip-stock",
        action="store_true",
        help="leave out the stock betterproto2 plugin (the slowest run)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary projects and print where they are"
    )
    return parser


def _sizes(args: argparse.Namespace) -> list[tuple[str, dict[str, int]]]:
    """The corpora to measure: name and synthetic sizes (empty for googleapis)."""
    main = {"packages": args.packages, "files": args.files, "messages": args.messages}
    plan = [("synthetic", main)]
    if not args.skip_scaling:
        # A quarter of the packages (or of the files, for very small runs) for the scaling step.
        small = dict(main)
        if args.packages >= 4:
            small["packages"] = args.packages // 4
        elif args.files >= 4:
            small["files"] = args.files // 4
        else:
            small["packages"] = small["files"] = 1
        plan.append(("synthetic-small", small))
    if not args.skip_googleapis:
        plan.append(("googleapis-common-protos", {}))
    return plan


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _measure_all(args: argparse.Namespace, template: Path, tmp: Path) -> list[Corpus]:
    corpora = []
    for name, params in _sizes(args):
        project = _project(template, tmp / name)
        module = project / "proto"
        if params:
            written = write_corpus(module, params["packages"], params["files"], params["messages"])
            label = f"{name} {params['packages']}x{params['files']}x{params['messages']}"
        else:
            module.mkdir()
            written = _googleapis_protos(module)
            label = name
        _log(f"{label}: {len(written)} files in {project}")
        corpus = Corpus(label, len(written), dict(params))
        bench_corpus(
            corpus, project, written, repeat=args.repeat, stock=not args.skip_stock, log=_log
        )
        corpora.append(corpus)
    return corpora


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.packages, args.files, args.messages, args.repeat) < 1:
        _parser().error("--packages, --files, --messages and --repeat must be >= 1")
    template = args.root.resolve()
    missing = [n for n in _PROJECT_FILES if not (template / n).is_file()]
    if missing:
        _parser().error(f"{template} has no {', '.join(missing)}; pass the project with --root")

    load_before = _load()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="protoship-bench-"))
    try:
        corpora = _measure_all(args, template, tmp)
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    main_corpus = corpora[0]
    small_corpus = None if args.skip_scaling else corpora[1]
    found = targets(main_corpus, small_corpus)
    load_after = _load()
    report = {
        "schema": SCHEMA,
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "mem_total_gib": _mem_total_gib(),
            "load_before": load_before,
            "load_after": load_after,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "toolchain": toolchain.versions(),
        "memory": (
            "peak_pss_mib (reported, targets): PSS of the whole process tree, summed, from "
            f"/proc, read with at most 1/{_PSS_BUDGET} of the time spent reading it; "
            f"peak_rss_mib: RSS of the tree summed every {_SAMPLE_SECONDS * 1000:.0f} ms "
            "(counts shared pages per process: high); max_process_rss_mib: largest process"
            if _PROC.is_dir()
            else "ru_maxrss of the measured process (no /proc): largest single process"
        ),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "corpora": [{**asdict(c), "ratios": ratios(c)} for c in corpora],
        "scaling": {
            "full_time_ratio": _ratio_between(main_corpus, small_corpus) if small_corpus else None,
            "files_ratio": main_corpus.files / small_corpus.files if small_corpus else None,
        },
        "targets": found,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(table(corpora, found))
    load = ", ".join(map(str, load_after))
    print(f"\n{os.cpu_count()} cpus, load average {load}; results in {args.json}")
    failed = [f"{c.name}: {n}" for c in corpora for n, r in c.runs.items() if r.returncode]
    if failed:
        print("failed runs: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0

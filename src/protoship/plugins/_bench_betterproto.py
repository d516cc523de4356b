"""Time the stock betterproto2 plugin against `betterproto2_fast` on the same requests.

    python -m protoship.plugins._bench_betterproto [--packages 100 --files 20 --messages 5]

Two corpora: the .proto files shipped in googleapis-common-protos, and a synthetic tree
from `protoship.bench.corpus` (100 x 20 files by default). Each plugin gets the same
request bytes; the outputs are compared as well, since a faster wrong answer is no answer.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.compiler import plugin_pb2

from protoship.bench.corpus import compile_request, write_corpus

PARAMETER = "client_generation=sync_async,server_generation=async"


@dataclass(frozen=True)
class Timing:
    corpus: str
    files: int
    stock: float
    fast: float
    identical: bool

    @property
    def ratio(self) -> float:
        return self.stock / self.fast


def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def plugin_environment() -> dict[str, str]:
    """Environment in which both plugins (and the `ruff` they call) resolve to this venv."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in [str(_source_root()), env.get("PYTHONPATH", "")] if part
    )
    return env


def stock_command() -> list[str]:
    env = plugin_environment()
    found = shutil.which("protoc-gen-python_betterproto2", path=env["PATH"])
    if found is None:
        raise SystemExit("protoc-gen-python_betterproto2 not found; install betterproto2-compiler")
    return [found]


def fast_command() -> list[str]:
    return [sys.executable, "-m", "protoship.plugins.betterproto2_fast"]


def _run(command: Sequence[str], request: bytes, cwd: Path) -> tuple[float, bytes]:
    start = time.perf_counter()
    completed = subprocess.run(
        command, input=request, capture_output=True, env=plugin_environment(), cwd=cwd, check=False
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{command[-1]} failed:\n{completed.stderr.decode(errors='replace')}")
    return elapsed, completed.stdout


def _contents(response: bytes) -> dict[str, str]:
    parsed = plugin_pb2.CodeGeneratorResponse.FromString(response)
    return {file.name: file.content for file in parsed.file}


def time_plugins(corpus: str, request: bytes, files: int, cwd: Path, repeat: int) -> Timing:
    stock_times, fast_times = [], []
    stock_out = fast_out = b""
    for _ in range(repeat):
        elapsed, stock_out = _run(stock_command(), request, cwd)
        stock_times.append(elapsed)
        elapsed, fast_out = _run(fast_command(), request, cwd)
        fast_times.append(elapsed)
    return Timing(
        corpus=corpus,
        files=files,
        stock=min(stock_times),
        fast=min(fast_times),
        identical=_contents(stock_out) == _contents(fast_out),
    )


def googleapis_request() -> tuple[bytes, int]:
    spec = importlib.util.find_spec("google.api")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("googleapis-common-protos is not installed")
    site = Path(next(iter(spec.submodule_search_locations))).resolve().parent.parent
    files = sorted(
        path.relative_to(site).as_posix()
        for path in (site / "google").rglob("*.proto")
        if path.relative_to(site).parts[1] != "protobuf"
    )
    return compile_request([site], files, PARAMETER), len(files)


def synthetic_request(root: Path, packages: int, files: int, messages: int) -> tuple[bytes, int]:
    written = write_corpus(root, packages, files, messages)
    names = [path.relative_to(root).as_posix() for path in written]
    return compile_request([root], names, PARAMETER), len(names)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--files", type=int, default=20, help="files per package")
    parser.add_argument("--messages", type=int, default=5, help="messages per file")
    parser.add_argument("--repeat", type=int, default=1, help="runs per plugin; best is kept")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args(argv)

    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="protoship-bench-") as tmp:
        work = Path(tmp)
        request, count = googleapis_request()
        timings.append(time_plugins("googleapis-common-protos", request, count, work, args.repeat))
        if not args.skip_synthetic:
            request, count = synthetic_request(
                work / "corpus", args.packages, args.files, args.messages
            )
            timings.append(time_plugins("synthetic", request, count, work, args.repeat))

    print(f"{'corpus':<26}{'files':>7}{'stock s':>10}{'fast s':>10}{'ratio':>8}  identical")
    for timing in timings:
        print(
            f"{timing.corpus:<26}{timing.files:>7}{timing.stock:>10.2f}{timing.fast:>10.2f}"
            f"{timing.ratio:>7.1f}x  {'yes' if timing.identical else 'NO'}"
        )
    if not all(timing.identical for timing in timings):
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()

"""`betterproto2_fast` must produce exactly what the stock betterproto2 plugin produces.

Each case compiles real .proto files into a CodeGeneratorRequest, feeds the same bytes to
`protoc-gen-python_betterproto2` and to `python -m protoship.plugins.betterproto2_fast`, and
compares the responses file by file, byte for byte (file order is not compared: the stock
plugin emits its `__init__.py` files in set order, which varies run to run).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from betterproto2_compiler.lib.google.protobuf import FileDescriptorProto
from google.protobuf.compiler import plugin_pb2

from protoship.bench.corpus import compile_request, write_corpus
from protoship.plugins import betterproto2_fast

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "proto"
SYNC_ASYNC = "client_generation=sync_async,server_generation=async"
OPTION_SETS = [
    SYNC_ASYNC,
    "",
    "client_generation=async_sync,pydantic_dataclasses",
    "client_generation=none,google_protobuf_descriptors",
]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Both plugins call `ruff` by name; make it (and the stock plugin) this venv's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in [str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")] if part
    )
    return env


@dataclass(frozen=True)
class PluginRun:
    returncode: int
    files: dict[str, str | None]
    error: str | None
    stderr: str


def _run(command: list[str], request: bytes, cwd: Path) -> PluginRun:
    completed = subprocess.run(
        command, input=request, capture_output=True, env=_environment(), cwd=cwd, check=False
    )
    stderr = completed.stderr.decode(errors="replace")
    if completed.returncode != 0:
        return PluginRun(completed.returncode, {}, None, stderr)
    response = plugin_pb2.CodeGeneratorResponse.FromString(completed.stdout)
    files: dict[str, str | None] = {}
    for file in response.file:
        assert file.name not in files, f"duplicate output {file.name}"
        files[file.name] = file.content if file.HasField("content") else None
    return PluginRun(
        completed.returncode, files, response.error if response.HasField("error") else None, stderr
    )


def _stock_command() -> list[str]:
    found = shutil.which("protoc-gen-python_betterproto2", path=_environment()["PATH"])
    if found is None:
        pytest.skip("protoc-gen-python_betterproto2 is not installed")
    return [found]


def _fast_command() -> list[str]:
    return [sys.executable, "-m", "protoship.plugins.betterproto2_fast"]


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _assert_same(request: bytes, cwd: Path) -> PluginRun:
    stock = _run(_stock_command(), request, cwd)
    fast = _run(_fast_command(), request, cwd)
    assert fast.returncode == stock.returncode, fast.stderr
    assert fast.error == stock.error
    if stock.returncode != 0:
        # The stock plugin fails with a traceback; the exception line is what matters.
        assert _last_line(fast.stderr) == _last_line(stock.stderr)
        return stock
    assert sorted(fast.files) == sorted(stock.files)
    different = [name for name in stock.files if fast.files[name] != stock.files[name]]
    assert not different, f"contents differ: {different}"
    return stock


@pytest.fixture(scope="module")
def googleapis_root() -> Path:
    api = pytest.importorskip("google.api")
    return Path(next(iter(api.__path__))).resolve().parent.parent


def _example_request(googleapis_root: Path, parameter: str) -> bytes:
    files = sorted(path.relative_to(PROTO_ROOT).as_posix() for path in PROTO_ROOT.rglob("*.proto"))
    assert files, "no example protos"
    return compile_request([PROTO_ROOT, googleapis_root], files, parameter)


def _googleapis_files(googleapis_root: Path) -> list[str]:
    return sorted(
        path.relative_to(googleapis_root).as_posix()
        for path in (googleapis_root / "google").rglob("*.proto")
        if path.relative_to(googleapis_root).parts[1] != "protobuf"
    )


@pytest.mark.parametrize("parameter", OPTION_SETS)
def test_example_protos(googleapis_root: Path, parameter: str, tmp_path: Path) -> None:
    stock = _assert_same(_example_request(googleapis_root, parameter), tmp_path)
    assert stock.returncode == 0
    assert "acme/orders/v1/__init__.py" in stock.files


def test_example_protos_from_repo_root(googleapis_root: Path) -> None:
    # ruff reads its configuration from the working directory (this repo sets a 100-column
    # line length), so the batched ruff run must see the same directory as the stock one.
    stock = _assert_same(_example_request(googleapis_root, SYNC_ASYNC), REPO_ROOT)
    assert stock.returncode == 0


@pytest.mark.parametrize("parameter", [SYNC_ASYNC, "client_generation=async"])
def test_googleapis_corpus(googleapis_root: Path, parameter: str, tmp_path: Path) -> None:
    files = _googleapis_files(googleapis_root)
    assert len(files) > 20
    stock = _assert_same(compile_request([googleapis_root], files, parameter), tmp_path)
    assert stock.returncode == 0
    assert "google/api/__init__.py" in stock.files


@pytest.mark.slow
def test_googleapis_files_one_by_one(googleapis_root: Path, tmp_path: Path) -> None:
    # Per-file requests carry fewer imports, which exercises other type-resolution paths.
    for name in _googleapis_files(googleapis_root):
        _assert_same(compile_request([googleapis_root], [name], SYNC_ASYNC), tmp_path)


def test_synthetic_corpus(tmp_path: Path) -> None:
    written = write_corpus(
        tmp_path / "corpus", packages=3, files_per_package=4, messages_per_file=3
    )
    names = [path.relative_to(tmp_path / "corpus").as_posix() for path in written]
    request = compile_request([tmp_path / "corpus"], names, SYNC_ASYNC)
    stock = _assert_same(request, tmp_path)
    assert "synth/pkg002/v1/__init__.py" in stock.files


@pytest.mark.parametrize(
    "parameter", ["client_generation=bogus", "server_generation=sync", "server_generation="]
)
def test_invalid_options_fail_identically(
    googleapis_root: Path, parameter: str, tmp_path: Path
) -> None:
    stock = _assert_same(_example_request(googleapis_root, parameter), tmp_path)
    assert stock.returncode != 0


def test_ruff_failure_falls_back_identically(googleapis_root: Path, tmp_path: Path) -> None:
    # A `ruff` that always fails: the stock plugin raises SyntaxError after writing the
    # unformatted module; the fast plugin must end up in exactly the same place.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    ruff = fake_bin / "ruff"
    ruff.write_text("#!/bin/sh\nexit 2\n", encoding="utf-8")
    ruff.chmod(0o755)
    request = _example_request(googleapis_root, SYNC_ASYNC)
    results = []
    for command in (_stock_command(), _fast_command()):
        cwd = tmp_path / command[-1].replace("/", "_")
        cwd.mkdir()
        env = _environment()
        env["PATH"] = os.pathsep.join([str(fake_bin), env["PATH"]])
        # The stock plugin walks output packages in set order, so which module it writes to
        # invalid-generated-code.py depends on string hashing: fix it for both runs.
        env["PYTHONHASHSEED"] = "0"
        completed = subprocess.run(
            command, input=request, capture_output=True, env=env, cwd=cwd, check=False
        )
        invalid = cwd / "invalid-generated-code.py"
        results.append(
            (
                completed.returncode,
                _last_line(completed.stderr.decode(errors="replace")),
                invalid.read_bytes() if invalid.exists() else None,
            )
        )
    assert results[0][0] != 0
    assert results[0][2] is not None
    assert results[1] == results[0]


def test_converted_descriptors_equal_betterproto2_parse(googleapis_root: Path) -> None:
    files = _googleapis_files(googleapis_root)
    data = compile_request([googleapis_root, PROTO_ROOT], files, SYNC_ASYNC)
    decoded = betterproto2_fast._decode_request(data)
    upb_request = plugin_pb2.CodeGeneratorRequest.FromString(data)
    assert len(decoded.request.proto_file) == len(upb_request.proto_file)
    for converted, upb_file in zip(decoded.request.proto_file, upb_request.proto_file, strict=True):
        upb_file.ClearField("source_code_info")
        reference = FileDescriptorProto.parse(upb_file.SerializeToString())
        assert converted == reference
        assert repr(converted) == repr(reference)
    assert decoded.request.parameter == SYNC_ASYNC
    assert decoded.request.file_to_generate == files


def test_refuses_other_compiler_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda _: "0.11.0")
    with pytest.raises(betterproto2_fast.CompilerVersionError, match=r"==0\.10\.1"):
        betterproto2_fast._check_compiler_version()

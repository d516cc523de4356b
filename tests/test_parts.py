"""Splitting a tree into parts, and handing each generator only what it reads, changes nothing.

The reference is the plain way to run the generators: one run per plugin over the whole tree,
every file's full descriptor with all source info and all imports (`READS` emptied, parts
never split). The same project generated with every part as small as it can be (one package
or directory per part) and with each generator's reduced request must give the same bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, copy_project, snapshot
from test_corpus import _googleapis_protos

from protoship import generate, output, pipeline
from protoship.bench.corpus import write_corpus
from protoship.errors import PipelineError

CASES = Path(__file__).parent / "realworld"


def _with_module(dest: Path, fill: object) -> Path:
    root = copy_project(REPO, dest)
    shutil.rmtree(root / "proto")
    (root / "proto").mkdir()
    fill(root / "proto")  # type: ignore[operator]
    return root


def _generate(root: Path, monkeypatch: pytest.MonkeyPatch, *, split: bool) -> dict[str, bytes]:
    runs: list[int] = []
    real_run = generate.run

    def counting_run(*args: object, **kwargs: object) -> object:
        runs.append(len(args[2]))  # type: ignore[arg-type]
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(generate, "run", counting_run)
        if split:
            patch.setattr(generate, "PART_BYTES", 1)
        else:
            patch.setattr(generate, "PART_BYTES", 10**12)
            patch.setattr(generate, "READS", {})
        result = pipeline.generate(root, force=True)
    tree = snapshot(root / "packages")
    tree.pop(output.MANIFEST)
    tree["runs"] = str(runs[-1]).encode()
    tree["warnings"] = "\n".join(result.warnings).encode()
    return tree


def _projects() -> list[tuple[str, object]]:
    def synthetic(module: Path) -> None:
        write_corpus(module, packages=6, files_per_package=3, messages_per_file=2)

    def example(module: Path) -> None:
        shutil.copytree(REPO / "proto", module, dirs_exist_ok=True)

    def googleapis(module: Path) -> None:
        _googleapis_protos(module)

    def realworld(module: Path) -> None:
        # Several cases side by side: custom options, keyword names, proto2, well-known types.
        for case in ("keywords", "layout", "proto2", "recursive", "wkt"):
            shutil.copytree(CASES / case / "proto", module, dirs_exist_ok=True)

    return [
        ("example", example),
        ("synthetic", synthetic),
        ("googleapis", googleapis),
        ("realworld", realworld),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fill"), _projects(), ids=[n for n, _ in _projects()])
def test_parts_give_the_same_bytes_as_one_run(
    name: str, fill: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _generate(_with_module(tmp_path / "whole", fill), monkeypatch, split=False)
    parts = _generate(_with_module(tmp_path / "parts", fill), monkeypatch, split=True)
    # The split really happened: more runs than plugins.
    assert int(parts.pop("runs")) > int(whole.pop("runs")), name
    assert len(whole) > 20
    differ = sorted(p for p in whole.keys() | parts.keys() if whole.get(p) != parts.get(p))
    assert not differ, f"{name}: {differ[:10]}"


def test_a_plugin_that_needs_every_file_must_say_so(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin whose output depends on which files it is given cannot be split silently: the
    run stops and says to add `strategy: all`, which it honours."""
    index = tmp_path / "protoc-gen-index"
    index.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from google.protobuf.compiler import plugin_pb2\n"
        "req = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())\n"
        "resp = plugin_pb2.CodeGeneratorResponse()\n"
        "resp.file.add(name='proto_index.py',\n"
        "              content='FILES = %r\\n' % sorted(req.file_to_generate))\n"
        "sys.stdout.buffer.write(resp.SerializeToString())\n"
    )
    index.chmod(0o755)
    gen = project / "buf.gen.yaml"
    original = gen.read_text()
    gen.write_text(original + f"  - local: {index}\n    out: grpcio\n")
    monkeypatch.setattr(generate, "PART_BYTES", 1)
    with pytest.raises(PipelineError) as failure:
        pipeline.generate(project)
    message = str(failure.value)
    assert "writes proto_index.py differently depending on which files it is given" in message
    assert "add `strategy: all`" in message
    assert not (project / "packages").exists()

    gen.write_text(original + f"  - local: {index}\n    out: grpcio\n    strategy: all\n")
    pipeline.generate(project)
    listed = (project / "packages" / "acme-protos-grpcio" / "src" / "proto_index.py").read_text()
    proto_files = sorted(
        p.relative_to(project / "proto").as_posix() for p in (project / "proto").rglob("*.proto")
    )
    assert listed.endswith(f"FILES = {proto_files!r}\n")


def test_split_follows_packages_and_directories(tmp_path: Path) -> None:
    """Files of one proto package, or of one directory, are never in different parts."""
    from protoship import config as config_mod
    from protoship import image as image_mod

    root = _with_module(
        tmp_path / "p",
        lambda m: write_corpus(m, packages=5, files_per_package=4, messages_per_file=1),
    )
    # A package spread over two directories, and a directory holding one file of it.
    extra = root / "proto" / "elsewhere"
    extra.mkdir()
    (extra / "stray.proto").write_text(
        'syntax = "proto3";\npackage synth.pkg001.v1;\nmessage Stray {}\n'
    )
    cfg = config_mod.load(root)
    work = tmp_path / "work"
    work.mkdir()
    img = image_mod.compile_image(cfg, work)
    paths = [f.path for f in img.files]
    parts = generate.split(img, paths, count=len(paths), source_info="all")
    assert sorted(p for part in parts for p in part) == sorted(paths)
    assert len(parts) == 5
    where = {path: i for i, part in enumerate(parts) for path in part}
    package_of = {f.path: f.package for f in img.files}
    for a in paths:
        for b in paths:
            if package_of[a] == package_of[b] or a.rpartition("/")[0] == b.rpartition("/")[0]:
                assert where[a] == where[b], (a, b)
    # Deterministic: the same split every time.
    assert parts == generate.split(img, paths, count=len(paths), source_info="all")


def test_requests_carry_only_what_the_generator_reads(tmp_path: Path) -> None:
    """A part's image: its files, what they import (directly, for generators that resolve
    names; hollowed, for betterproto2), and the outside files the whole run imports."""
    from google.protobuf import descriptor_pb2

    from protoship import config as config_mod
    from protoship import image as image_mod
    from protoship import wire

    root = _with_module(
        tmp_path / "p",
        lambda m: write_corpus(m, packages=4, files_per_package=3, messages_per_file=2),
    )
    cfg = config_mod.load(root)
    work = tmp_path / "work"
    work.mkdir()
    img = image_mod.compile_image(cfg, work)
    target = "synth/pkg003/v1/file001.proto"

    def files(data: bytes) -> dict[str, bytes]:
        found = {}
        for _, _, payload in wire.fields(data):
            fd = descriptor_pb2.FileDescriptorProto.FromString(data[payload])
            found[fd.name] = data[payload]
        return found

    full = files(img.request([target]))
    direct = files(img.request([target], imports="direct"))
    hollow = files(img.request([target], imports="hollow", source_info="none"))
    everything = {f.path for f in img.files + img.imports}
    assert set(full) == img.closure([target]) and set(full) < everything
    own_deps = {d for d in img.closure([target], direct=True)}
    assert set(direct) == own_deps < set(full)
    assert set(hollow) == set(direct)
    dep = next(p for p in hollow if p != target and p.startswith("synth/"))
    hollowed = descriptor_pb2.FileDescriptorProto.FromString(hollow[dep])
    fields = [f for m in hollowed.message_type for f in m.field]
    assert fields and not any(f.type_name for f in fields)
    assert not hollowed.service and not hollowed.source_code_info.location
    # Only the targets are generated: everything else carries buf's is_import mark.
    marked = {name for name, data in hollow.items() if b"\xd2\xf6\x03" in data[-8:]}
    assert marked == set(hollow) - {target}


def _buf_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the plugin label of every `buf generate` the pipeline starts."""
    started: list[str] = []
    real = subprocess.run

    def spy(args: list[str], *rest: Any, **kwargs: Any) -> Any:
        if "generate" in args:
            template = Path(str(kwargs["cwd"])) / "buf.gen.yaml"
            started.append(template.read_text())
        return real(args, *rest, **kwargs)

    # generate calls subprocess.run through the module, so this sees every buf it starts.
    monkeypatch.setattr(subprocess, "run", spy)
    return started


def test_unchanged_parts_are_not_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After one file changes, only the runs whose request changed run again; the output is
    what a run from scratch (--force, which reads no cache) gives."""
    root = _with_module(
        tmp_path / "p",
        lambda m: write_corpus(m, packages=6, files_per_package=3, messages_per_file=2),
    )
    monkeypatch.setattr(generate, "PART_BYTES", 1)
    started = _buf_runs(monkeypatch)
    pipeline.generate(root)
    first = len(started)
    assert first > 10

    edited = root / "proto" / "synth" / "pkg004" / "v1" / "file001.proto"
    edited.write_text(
        edited.read_text().replace(
            "message F001Msg001 {", "message F001Msg001 {\n  int32 added = 99;", 1
        )
    )
    started.clear()
    pipeline.generate(root)
    again = len(started)
    # The edited file's own part for each plugin, and the parts that read its descriptors.
    assert 0 < again < first / 2, (again, first)
    incremental = snapshot(root / "packages")

    started.clear()
    pipeline.generate(root, force=True)
    assert len(started) == first
    assert snapshot(root / "packages") == incremental
    assert b"added" in b"".join(data for path, data in incremental.items() if "pkg004" in path)
    # Only what the last run used is kept.
    kept = {p.name for p in (root / ".protoship" / "cache").iterdir()}
    assert len(kept) == first


def test_unknown_plugins_always_run(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin protoship does not know may change without any version changing: never cached."""
    plugin = tmp_path / "protoc-gen-mine"
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from google.protobuf.compiler import plugin_pb2\n"
        "plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())\n"
        "resp = plugin_pb2.CodeGeneratorResponse()\n"
        "resp.file.add(name='mine.py', content='VALUE = 1\\n')\n"
        "sys.stdout.buffer.write(resp.SerializeToString())\n"
    )
    plugin.chmod(0o755)
    gen = project / "buf.gen.yaml"
    gen.write_text(gen.read_text() + f"  - local: {plugin}\n    out: grpcio\n")
    started = _buf_runs(monkeypatch)
    pipeline.generate(project)
    plugin.write_text(plugin.read_text().replace("VALUE = 1", "VALUE = 2"))
    (project / "proto" / "README.md").write_text("touch the fingerprint\n")
    gen.write_text(gen.read_text() + "# changed\n")
    started.clear()
    pipeline.generate(project)
    assert [t for t in started if "protoc-gen-mine" in t], started
    assert len(started) == 1, "known plugins with unchanged requests came from the cache"
    mine = project / "packages" / "acme-protos-grpcio" / "src" / "mine.py"
    assert mine.read_text().endswith("VALUE = 2\n")

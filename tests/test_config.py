from __future__ import annotations

from pathlib import Path

import pytest

from protoship import config
from protoship.errors import PipelineError


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_example_config_groups_plugins_into_flavours(project: Path) -> None:
    cfg = config.load(project)
    assert cfg.name == "acme-protos"
    assert [f.key for f in cfg.flavours] == ["grpcio", "betterproto"]
    grpcio, betterproto = cfg.flavours
    assert grpcio.layout == "proto-native" and grpcio.import_root is None
    assert grpcio.distribution == "acme-protos-grpcio"
    assert betterproto.import_root == "acme_protos_betterproto"
    assert len(grpcio.plugins) == 4 and len(betterproto.plugins) == 1
    assert cfg.module == project / "proto"


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_flavour_names_the_buf_gen_line(project: Path) -> None:
    _edit(project / "buf.gen.yaml", "out: betterproto", "out: dataclasses")
    line = _line_of(project / "buf.gen.yaml", "local: protoc-gen-python_betterproto2")
    with pytest.raises(PipelineError) as err:
        config.load(project)
    message = str(err.value)
    assert message.startswith(f"buf.gen.yaml:{line}:")
    assert "'dataclasses'" in message and "[tool.protoship.flavours.dataclasses]" in message


def test_invalid_yaml_reports_line(project: Path) -> None:
    (project / "buf.gen.yaml").write_text("version: v2\nplugins:\n  - local: [a\n")
    with pytest.raises(PipelineError, match=r"^buf.gen.yaml:\d+: invalid YAML"):
        config.load(project)


def test_nested_out_is_refused(project: Path) -> None:
    _edit(project / "buf.gen.yaml", "out: betterproto", "out: betterproto/x")
    line = _line_of(project / "buf.gen.yaml", "local: protoc-gen-python_betterproto2")
    with pytest.raises(PipelineError, match=rf"buf.gen.yaml:{line}: `out: betterproto/x` must be"):
        config.load(project)


def test_bad_version_names_pyproject(project: Path) -> None:
    _edit(project / "pyproject.toml", 'version = "0.1.0"\noutput', 'version = "one"\noutput')
    with pytest.raises(PipelineError, match=r"pyproject.toml \[tool.protoship\]: version 'one'"):
        config.load(project)


def test_more_than_one_module_is_refused(project: Path) -> None:
    (project / "buf.yaml").write_text("version: v2\nmodules:\n  - path: proto\n  - path: other\n")
    with pytest.raises(PipelineError, match=r"^buf.yaml:3: expected exactly one module"):
        config.load(project)


def test_flavour_table_without_plugins_is_refused(project: Path) -> None:
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text + '\n[tool.protoship.flavours.extra]\nlayout = "proto-native"\n'
    )
    with pytest.raises(PipelineError, match=r"flavours.extra\]: no plugin"):
        config.load(project)

"""Units of the packaging stage: pyproject merging, requirement derivation, image marking."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import tomlkit

from protoship import config, image, output, pipeline, requirements, toolchain


def test_hand_edits_and_comments_survive_regeneration(project: Path) -> None:
    pipeline.generate(project)
    cfg = config.load(project)
    pyproject = cfg.output / cfg.flavours[0].distribution / "pyproject.toml"
    text = pyproject.read_text()
    text = text.replace(
        "[project]\n", '[project]\n# Owned by the platform team.\nkeywords = ["schemas"]\n'
    )
    text += '\n[project.urls]\nHomepage = "https://example.invalid/schemas"\n'
    text = text.replace('version = "0.1.0"', 'version = "9.9.9"')
    pyproject.write_text(text)
    pipeline.generate(project)
    merged = pyproject.read_text()
    assert '# Owned by the platform team.\nkeywords = ["schemas"]' in merged
    assert tomlkit.parse(merged)["project"]["urls"]["Homepage"] == "https://example.invalid/schemas"
    assert tomlkit.parse(merged)["project"]["version"] == cfg.version, "managed keys are rewritten"
    pipeline.generate(project, force=True)
    assert pyproject.read_text() == merged, "merging must be stable"


def test_requirements_come_from_generated_code() -> None:
    pb2 = (
        b"from google.protobuf import runtime_version as _runtime_version\n"
        b"_runtime_version.ValidateProtobufRuntimeVersion(\n"
        b"    _runtime_version.Domain.PUBLIC,\n    7,\n    35,\n    1,\n    '',\n    'x.proto'\n)\n"
    )
    grpc = b"import grpc\nGRPC_GENERATED_VERSION = '1.85.1'\nfrom own.pkg import x_pb2\n"
    reqs = requirements.derive([pb2, grpc], frozenset({"own", "own.pkg", "own.pkg.x_pb2"}))
    assert reqs.dependencies == ("grpcio<2,>=1.85.1", "protobuf<8,>=7.35.1")
    assert reqs.requires_python == ">=3.10"
    newer = pb2.replace(b"35,\n    1", b"36,\n    2")
    assert requirements.derive([pb2, newer], frozenset()).dependencies == ("protobuf<8,>=7.36.2",)


def test_googleapis_import_adds_its_distribution() -> None:
    code = b"from google.type import money_pb2 as m\nfrom google.protobuf import any_pb2\n"
    deps = requirements.derive([code], frozenset()).dependencies
    assert [d.split(">")[0].split("<")[0] for d in deps] == ["googleapis-common-protos", "protobuf"]


def test_image_marks_outside_files_as_imports(project: Path) -> None:
    cfg = config.load(project)
    with output.workspace(cfg) as work:
        img = image.compile_image(cfg, work)
        # buf lint only lints non-import files: the well-known types would fail STANDARD lint.
        proc = subprocess.run(
            [toolchain.buf_executable(), "lint", str(img.path)],
            capture_output=True,
            text=True,
            cwd=project,
            check=False,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {f.path for f in img.files} == set(image.discover(cfg))
    assert img.imports and all(f.provider for f in img.imports)
    assert {f.provider for f in img.imports} >= {"protobuf"}


def test_schema_identity_is_shipped(generated: Path) -> None:
    cfg = config.load(generated)
    for flavour in cfg.flavours:
        schema = json.loads((cfg.output / flavour.distribution / "schema.json").read_text())
        assert len(schema["descriptor_set_sha256"]) == 64
        assert schema["files"] == image.discover(cfg)
        protos = list((cfg.output / flavour.distribution / "src").rglob("*.proto"))
        assert len(protos) == len(schema["files"])

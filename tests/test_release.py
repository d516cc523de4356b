"""Release pieces that need no index and no git history: versions, buf configs, schema diffs,
and publish's refusals, retries and reports (with twine and the index replaced)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import tomlkit
from conftest import REPO, copy_project

from protoship import config, image, output, pipeline
from protoship.errors import PipelineError
from protoship.release import bufrun, build, changes, lint, publish, version

ORDER = "proto/acme/orders/v1/order.proto"


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("0.1.0", "major", "1.0.0"),
        ("1.4.2", "minor", "1.5.0"),
        ("1.4.2", "patch", "1.4.3"),
        ("2", "patch", "2.0.1"),
        ("1.4.2", "1.10.0", "1.10.0"),
    ],
)
def test_version_resolve(current: str, target: str, expected: str) -> None:
    assert version.resolve(current, target) == expected


def test_version_resolve_rejects_nonsense() -> None:
    with pytest.raises(PipelineError, match="neither major, minor, patch nor a PEP 440"):
        version.resolve("1.0.0", "bigger")


def test_check_config_rewrites_workspace_paths_to_image_paths(project: Path) -> None:
    (project / "buf.yaml").write_text(
        "version: v2\nmodules:\n  - path: proto\nlint:\n  use: [STANDARD]\n"
        "  ignore: [proto/acme/catalog]\n"
        "  ignore_only:\n    FIELD_LOWER_SNAKE_CASE: [proto/acme/orders/v1/order.proto]\n"
        "breaking:\n  use: [FILE]\n",
        encoding="utf-8",
    )
    cfg = config.load(project)
    assert bufrun.check_config(cfg, "lint") == {
        "version": "v2",
        "lint": {
            "use": ["STANDARD"],
            "ignore": ["acme/catalog"],
            "ignore_only": {"FIELD_LOWER_SNAKE_CASE": ["acme/orders/v1/order.proto"]},
        },
    }
    assert bufrun.check_config(cfg, "breaking", use=["WIRE"]) == {
        "version": "v2",
        "breaking": {"use": ["WIRE"]},
    }


def test_lint_finding_is_reported_as_the_user_sees_it(project: Path, tmp_path: Path) -> None:
    path = project / ORDER
    path.write_text(
        path.read_text(encoding="utf-8").replace("string sku = 2;", "string skuCode = 2;"),
        encoding="utf-8",
    )
    cfg = config.load(project)
    compiled = image.compile_image(cfg, tmp_path)
    findings = bufrun.run(cfg, "lint", compiled.path)
    assert [str(f) for f in findings] == [
        f'{ORDER}:25:12: Field name "skuCode" should be lower_snake_case, such as "sku_code". '
        "[FIELD_LOWER_SNAKE_CASE]"
    ]
    # The same rule, ignored the way buf.yaml v2 spells paths, is honoured on the image.
    buf_yaml = cfg.buf_yaml.read_text(encoding="utf-8")
    cfg.buf_yaml.write_text(
        buf_yaml.replace("    - STANDARD\n", f"    - STANDARD\n  ignore:\n    - {ORDER}\n"),
        encoding="utf-8",
    )
    assert bufrun.run(cfg, "lint", compiled.path) == []


def _elements(project: Path, work: Path) -> set[str]:
    cfg = config.load(project)
    work.mkdir()
    compiled = image.compile_image(cfg, work)
    return changes.elements(compiled.path, {f.path for f in compiled.files})


def test_changes_name_what_was_added_and_removed(project: Path, tmp_path: Path) -> None:
    before = _elements(project, tmp_path / "a")
    assert "enum value acme.orders.v1.Order.State.STATE_PAID" in before
    assert "method acme.orders.v1.OrderService.GetOrder" in before
    assert not any("NotesEntry" in e for e in before)  # map entries are not API
    path = project / ORDER
    text = path.read_text(encoding="utf-8")
    text = text.replace("  string text = 1;\n", "  string text = 1;\n  string author = 3;\n")
    text = text.replace("  string network = 2;\n", "")
    text += "\nmessage Gift {\n  string wrapping = 1;\n}\n"
    path.write_text(text, encoding="utf-8")
    diff = changes.compare(before, _elements(project, tmp_path / "b"))
    assert diff.added == (
        "field acme.orders.v1.Gift.wrapping",
        "field acme.orders.v1.Note.author",
        "message acme.orders.v1.Gift",
    )
    assert diff.removed == ("field acme.orders.v1.CardPayment.network",)
    assert changes.needed(False, diff) == "minor"
    assert changes.needed(True, diff) == "major"
    assert changes.needed(False, changes.Changes((), diff.removed)) == "patch"


@pytest.mark.slow
def test_bump_keeps_comments_and_leaves_packages_as_generation_would(project: Path) -> None:
    pipeline.generate(project)
    meta = project / "packages" / "acme-protos" / "pyproject.toml"
    meta.write_text(
        meta.read_text(encoding="utf-8") + "\n[tool.acme]\n# kept\nowner = 'api-team'\n",
        encoding="utf-8",
    )
    pipeline.generate(project)  # a hand-added key is part of the generated tree from now on
    root = project / "pyproject.toml"
    root.write_text(
        root.read_text(encoding="utf-8").replace(
            'version = "0.1.0"', 'version = "0.1.0"  # the one version'
        ),
        encoding="utf-8",
    )
    cfg = config.load(project)
    written = version.write(cfg, "1.0.0")
    assert (written.old, written.new) == ("0.1.0", "1.0.0")
    assert 'version = "1.0.0"  # the one version' in root.read_text(encoding="utf-8")
    doc = tomlkit.parse(meta.read_text(encoding="utf-8")).unwrap()
    assert doc["project"]["version"] == "1.0.0"
    assert doc["project"]["optional-dependencies"] == {
        "grpcio": ["acme-protos-grpcio==1.0.0"],
        "betterproto": ["acme-protos-betterproto==1.0.0"],
    }
    assert "# kept\nowner = 'api-team'" in meta.read_text(encoding="utf-8")
    cfg = config.load(project)
    assert version.recorded(cfg) == {}
    # Generation agrees byte for byte, and the refreshed manifest makes it a no-op.
    assert pipeline.generate(project, check=True).drift == output.Drift((), (), ())
    assert pipeline.generate(project).status == "unchanged"


def test_publish_needs_every_credential() -> None:
    with pytest.raises(PipelineError, match="HATCH_INDEX_USER, HATCH_INDEX_AUTH not set"):
        publish.target_from_env({"HATCH_INDEX_REPO": "http://127.0.0.1:1/"})
    with pytest.raises(PipelineError, match="contains credentials") as exc:
        publish.target_from_env(
            {
                "HATCH_INDEX_REPO": "https://bob:s3cret@example.org/",
                "HATCH_INDEX_USER": "u",
                "HATCH_INDEX_AUTH": "a",
            }
        )
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize(
    ("upload", "simple"),
    [
        ("main", "https://pypi.org/simple/"),
        ("test", "https://test.pypi.org/simple/"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/simple/"),
        (
            "https://nexus.example/repository/py/legacy/",
            "https://nexus.example/repository/py/simple/",
        ),
    ],
)
def test_simple_url_follows_the_upload_url(upload: str, simple: str) -> None:
    env = {"HATCH_INDEX_REPO": upload, "HATCH_INDEX_USER": "u", "HATCH_INDEX_AUTH": "pw"}
    target = publish.target_from_env(env)
    assert target.simple_url == simple
    assert "pw" not in repr(target)


def test_scrub_masks_every_form_of_the_credentials() -> None:
    target = publish.Target("http://x/", "http://x/simple/", "alice", "p@ss/word")
    text = "user alice pass p@ss/word quoted p%40ss%2Fword basic YWxpY2U6cEBzcy93b3Jk"
    assert target.scrub(text) == "user *** pass *** quoted *** basic ***"


@pytest.fixture
def fake_release(tmp_path: Path) -> tuple[config.Config, Path]:
    """A config whose packages/ exists and a dist/ with placeholder release files."""
    root = copy_project(REPO, tmp_path / "project")
    for name in ("acme-protos-grpcio", "acme-protos-betterproto", "acme-protos"):
        (root / "packages" / name).mkdir(parents=True)
        shutil.copy(REPO / "packages" / name / "pyproject.toml", root / "packages" / name)
    cfg = config.load(root)
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in build.expected_files(cfg):
        (dist / name).write_bytes(name.encode())
    return cfg, dist


class _FakeIndex:
    def __init__(self, failures: dict[str, list[tuple[int | None, str]]]) -> None:
        self.failures = failures
        self.files: dict[str, publish.IndexFile] = {}
        self.calls: list[str] = []

    def upload(self, target: publish.Target, path: Path) -> tuple[int | None, str]:
        self.calls.append(path.name)
        planned = self.failures.get(path.name)
        if planned:
            return planned.pop(0)
        self.files[path.name] = publish.IndexFile(path.name, None)
        return None, ""

    def listing(self, target: publish.Target, project: str) -> dict[str, publish.IndexFile]:
        prefix = project.replace("-", "_") + "-"
        return {n: f for n, f in self.files.items() if n.startswith(prefix)}


def _patch(monkeypatch: pytest.MonkeyPatch, index: _FakeIndex) -> None:
    monkeypatch.setattr(publish, "_twine_upload", index.upload)
    monkeypatch.setattr(publish, "index_files", index.listing)
    monkeypatch.setattr(publish, "check_stamps", lambda files, allow_dirty: "abc")
    monkeypatch.setattr(build, "twine_check", lambda files: None)


TARGET = publish.Target("http://127.0.0.1:1/", "http://127.0.0.1:1/simple/", "bob", "hunter22")


def test_publish_uploads_flavours_first_and_retries_transient_failures(
    fake_release: tuple[config.Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, dist = fake_release
    index = _FakeIndex(
        {
            "acme_protos_grpcio-0.1.0.tar.gz": [(503, "HTTPError: 503 Service Unavailable")],
            "acme_protos-0.1.0-py3-none-any.whl": [(0, "ConnectionError: Connection reset")],
        }
    )
    _patch(monkeypatch, index)
    messages: list[str] = []
    report = publish.publish(cfg, dist, TARGET, log=messages.append, sleep=lambda s: None)
    assert report.uploaded == build.expected_files(cfg)
    assert report.uploaded[-2:] == [
        "acme_protos-0.1.0-py3-none-any.whl",
        "acme_protos-0.1.0.tar.gz",
    ]
    assert index.calls.count("acme_protos_grpcio-0.1.0.tar.gz") == 2
    assert sum("retrying" in m for m in messages) == 2


def test_publish_reports_exactly_what_landed_when_it_stops(
    fake_release: tuple[config.Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, dist = fake_release
    failing = "acme_protos_betterproto-0.1.0.tar.gz"
    index = _FakeIndex({failing: [(503, "HTTPError: 503 from http://bob:hunter22@x/")] * 3})
    _patch(monkeypatch, index)
    with pytest.raises(PipelineError) as exc:
        publish.publish(cfg, dist, TARGET, log=lambda m: None, sleep=lambda s: None)
    message = str(exc.value)
    assert "hunter22" not in message and "bob" not in message
    assert f"upload stopped at {failing}: still failing after 3 attempts" in message
    assert (
        "uploaded: acme_protos_grpcio-0.1.0-py3-none-any.whl, acme_protos_grpcio-0.1.0.tar.gz, "
        "acme_protos_betterproto-0.1.0-py3-none-any.whl\n"
    ) in message
    assert (
        f"not uploaded: {failing}, acme_protos-0.1.0-py3-none-any.whl, acme_protos-0.1.0.tar.gz"
        in message
    )
    assert index.calls.count(failing) == 3
    # --resume finishes the job: files already there (same sha256) are skipped.
    for name, entry in index.files.items():
        index.files[name] = publish.IndexFile(name, build_sha(dist / entry.name))
    report = publish.publish(cfg, dist, TARGET, resume=True, log=lambda m: None)
    assert report.present == build.expected_files(cfg)[:3]
    assert report.uploaded == build.expected_files(cfg)[3:]


def build_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_refuses_before_uploading_when_the_version_exists(
    fake_release: tuple[config.Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, dist = fake_release
    index = _FakeIndex({})
    index.files["acme_protos-0.1.0.tar.gz"] = publish.IndexFile("acme_protos-0.1.0.tar.gz", "x")
    index.files["acme_protos-0.0.9.tar.gz"] = publish.IndexFile("acme_protos-0.0.9.tar.gz", "y")
    _patch(monkeypatch, index)
    with pytest.raises(
        PipelineError, match=r"0\.1\.0 is already on .*acme_protos-0\.1\.0\.tar\.gz"
    ):
        publish.publish(cfg, dist, TARGET, log=lambda m: None)
    assert index.calls == []


def test_publish_refuses_an_incomplete_dist(
    fake_release: tuple[config.Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, dist = fake_release
    (dist / "acme_protos-0.1.0.tar.gz").unlink()
    index = _FakeIndex({})
    _patch(monkeypatch, index)
    with pytest.raises(
        PipelineError, match=r"lacks acme_protos-0\.1\.0\.tar\.gz; run `nox -s build`"
    ):
        publish.publish(cfg, dist, TARGET, log=lambda m: None)
    assert index.calls == []


def test_wrong_credentials_stop_at_the_first_file(
    fake_release: tuple[config.Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, dist = fake_release
    first = build.expected_files(cfg)[0]
    index = _FakeIndex({first: [(403, "HTTPError: 403 Forbidden")]})
    _patch(monkeypatch, index)
    with pytest.raises(PipelineError, match="refused the credentials") as exc:
        publish.publish(cfg, dist, TARGET, log=lambda m: None)
    assert "uploaded: nothing" in str(exc.value)
    assert index.calls == [first]  # not retried


def test_schema_stamp_is_read_from_the_wheels(tmp_path: Path) -> None:
    wheel = tmp_path / "acme_protos_grpcio-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(
            "acme_protos_grpcio-0.1.0.dist-info/extra_metadata/schema.json",
            json.dumps({"source_commit": "abc", "source_tree_dirty": True}),
        )
    with pytest.raises(PipelineError, match="built from uncommitted changes"):
        publish.check_stamps([wheel], allow_dirty=False)
    assert publish.check_stamps([wheel], allow_dirty=True) == "abc"


def test_a_failed_attempt_that_landed_is_not_uploaded_twice(
    fake_release: tuple[config.Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, dist = fake_release
    first = build.expected_files(cfg)[0]
    index = _FakeIndex({})

    def timeout_after_storing(target: publish.Target, path: Path) -> tuple[int | None, str]:
        index.calls.append(path.name)
        index.files[path.name] = publish.IndexFile(path.name, build_sha(path))
        if path.name == first and index.calls.count(first) == 1:
            return 504, "HTTPError: 504 Gateway Timeout"
        return None, ""

    _patch(monkeypatch, index)
    monkeypatch.setattr(publish, "_twine_upload", timeout_after_storing)
    report = publish.publish(cfg, dist, TARGET, log=lambda m: None, sleep=lambda s: None)
    assert report.uploaded == build.expected_files(cfg)
    assert index.calls.count(first) == 1


def test_lint_reports_unformatted_protos(project: Path) -> None:
    edit = project / ORDER
    edit.write_text(
        edit.read_text(encoding="utf-8").replace("string sku = 2;", "string   sku = 2;"),
        encoding="utf-8",
    )
    result = lint.lint(config.load(project))
    assert result.findings == ()
    assert "-    string   sku = 2;" in result.format_diff
    assert "+    string sku = 2;" in result.format_diff
    assert result

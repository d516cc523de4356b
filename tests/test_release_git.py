"""The release gate in a real git repository: tag a release, change the schema, and check what
`breaking`, `bump` and the release build say about it."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, copy_project
from release_repo import ORDER, clone, commit_all, edit, git, make_repo

from protoship import cli, config, pipeline
from protoship.errors import PipelineError
from protoship.release import breaking, build

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v0.1.0, generated, committed and tagged (read-only: tests work in clones)."""
    return make_repo(tmp_path_factory.mktemp("released") / "repo")


@pytest.fixture
def repo(released: Path, tmp_path: Path) -> Path:
    return clone(released, tmp_path / "repo")


def run(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["--root", str(repo), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_no_release_yet_is_explained(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "tag", "-d", "v0.1.0")
    code, _, err = run(repo, capsys, "breaking")
    assert code == 1
    assert "no release tag (v<version>, e.g. v0.1.0) is reachable from HEAD" in err
    assert "git tag v0.1.0" in err
    assert "Traceback" not in err
    code, out, _ = run(repo, capsys, "bump")
    assert code == 0
    assert "no release yet" in out


def test_breaking_change_needs_a_major_release(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    edit(repo / ORDER, "uint32 quantity = 3;", "string quantity = 3;")
    finding = (
        f'{ORDER}:26:5: Field "3" with name "quantity" on message "Line" changed type from '
        '"uint32" to "string". [FIELD_SAME_TYPE]'
    )
    code, out, err = run(repo, capsys, "breaking")
    assert (code, out.splitlines()) == (1, [finding])
    assert "1 breaking change(s) against v0.1.0" in err

    code, out, _ = run(repo, capsys, "bump")
    assert code == 0
    assert f"breaking: {finding}" in out.splitlines()
    assert "needs a major bump over v0.1.0: `nox -s bump -- major` (0.1.0 -> 1.0.0)" in out

    # Refused before anything else (uncommitted changes, stale packages/), naming the break.
    with pytest.raises(PipelineError, match=r"breaks release v0\.1\.0") as refused:
        build.build(config.load(repo), tmp_path / "dist")
    assert finding in str(refused.value)

    pipeline.generate(repo)
    commit_all(repo, "quantity as a string")
    assert run(repo, capsys, "bump", "minor")[0] == 0
    with pytest.raises(PipelineError, match=r"0\.2\.0 breaks release v0\.1\.0 .* without a major"):
        build.build(config.load(repo), tmp_path / "dist")

    code, out, _ = run(repo, capsys, "bump", "major")
    assert code == 0
    assert "version 0.2.0 -> 1.0.0" in out
    # bump leaves packages/ exactly as generation would write it for 1.0.0.
    assert not pipeline.generate(repo, check=True).drift
    head = commit_all(repo, "1.0.0")
    built = build.build(config.load(repo), tmp_path / "dist")
    assert [p.name for p in built.files] == [
        "acme_protos_grpcio-1.0.0-py3-none-any.whl",
        "acme_protos_grpcio-1.0.0.tar.gz",
        "acme_protos_betterproto-1.0.0-py3-none-any.whl",
        "acme_protos_betterproto-1.0.0.tar.gz",
        "acme_protos-1.0.0-py3-none-any.whl",
        "acme_protos-1.0.0.tar.gz",
    ]
    assert built.baseline == "v0.1.0"
    assert (built.source_commit, built.dirty) == (head, False)
    with zipfile.ZipFile(built.files[0]) as wheel:
        schema = json.loads(
            wheel.read("acme_protos_grpcio-1.0.0.dist-info/extra_metadata/schema.json")
        )
    assert schema["source_commit"] == head
    # The stamp lives only in what ships: packages/ stays as generated.
    packaged = json.loads((repo / "packages/acme-protos-grpcio/schema.json").read_text())
    assert "source_commit" not in packaged
    assert schema["descriptor_set_sha256"] == packaged["descriptor_set_sha256"]
    # Reproducible: an independent build of the same commit gives the same bytes.
    again = build.build(config.load(repo), tmp_path / "again")
    assert {p.name: _sha(p) for p in again.files} == {p.name: _sha(p) for p in built.files}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_additive_change_asks_only_for_minor(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    edit(repo / ORDER, "  string text = 1;\n", "  string text = 1;\n  string author = 3;\n")
    code, out, _ = run(repo, capsys, "breaking")
    assert (code, out.strip()) == (0, "protoship: no breaking changes against v0.1.0")
    code, out, _ = run(repo, capsys, "bump")
    assert "added: field acme.orders.v1.Note.author" in out.splitlines()
    assert "needs a minor bump over v0.1.0: `nox -s bump -- minor` (0.1.0 -> 0.2.0)" in out
    pipeline.generate(repo)
    commit_all(repo, "note author")
    with pytest.raises(PipelineError, match=r"0\.1\.0 is already released .* bump -- minor"):
        build.build(config.load(repo), tmp_path / "dist")
    run(repo, capsys, "bump", "minor")
    commit_all(repo, "0.2.0")
    built = build.build(config.load(repo), tmp_path / "dist")
    assert built.files[0].name == "acme_protos_grpcio-0.2.0-py3-none-any.whl"
    assert built.warnings == ()


def test_comment_change_is_a_patch(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo / ORDER, "// A free-text note on an order.", "// A free-text note on an order.\n//")
    comparison = breaking.compare(config.load(repo))
    assert comparison is not None
    assert comparison.needed == "patch"
    assert not comparison.identical
    assert "needs a patch bump" in run(repo, capsys, "bump")[1]


def test_rule_categories_come_from_buf_yaml_or_the_command_line(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A field rename keeps the wire format but breaks generated code (FILE).
    edit(repo / ORDER, "string sku = 2;", "string stock_keeping_unit = 2;")
    code, out, _ = run(repo, capsys, "breaking")
    assert code == 1
    assert "[FIELD_SAME_NAME]" in out
    assert run(repo, capsys, "breaking", "--use", "WIRE")[0] == 0
    edit(repo / "buf.yaml", "    - FILE", "    - WIRE")
    assert run(repo, capsys, "breaking")[0] == 0


def test_against_any_ref(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "checkout", "--quiet", "-b", "feature")
    edit(repo / ORDER, "  fixed64 checksum = 15;\n", "")
    commit_all(repo, "drop checksum")
    code, out, _ = run(repo, capsys, "breaking", "--against", "main")
    assert code == 1
    assert "[FIELD_NO_DELETE]" in out
    code, out, _ = run(repo, capsys, "breaking", "--against", "HEAD")
    assert code == 0
    code, _, err = run(repo, capsys, "breaking", "--against", "no-such-ref")
    assert code == 1
    assert "'no-such-ref' is not a commit, branch or tag" in err


def test_project_in_a_subdirectory_of_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(REPO, tmp_path / "mono" / "apis")
    git(tmp_path / "mono", "init", "--quiet")
    commit_all(tmp_path / "mono", "apis")
    git(tmp_path / "mono", "tag", "v0.1.0")
    edit(project / ORDER, "uint32 quantity = 3;", "string quantity = 3;")
    code, out, _ = run(project, capsys, "breaking")
    assert code == 1
    assert out.startswith(f"{ORDER}:26:5: ")

"""Publish to a real index (pypiserver on 127.0.0.1 with an htpasswd file), then install each
extra of the meta package from it into a fresh venv and use the messages."""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from release_repo import make_repo

from protoship import cli, config
from protoship.release import build

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
USER, PASSWORD = "release-bot", "correct horse battery staple"


@dataclass(frozen=True)
class Index:
    url: str
    packages: Path

    def snapshot(self) -> dict[str, tuple[str, int]]:
        return {
            p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(self.packages.iterdir())
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    packages = tmp_path / "index"
    packages.mkdir()
    # {SHA} (ldap_sha1) is one of the schemes passlib's htpasswd reader accepts; writing it
    # needs no passlib here, and no bcrypt anywhere (passlib crashes with recent bcrypt).
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{{SHA}}{digest}\n", encoding="utf-8")
    port = _free_port()
    log = (tmp_path / "pypiserver.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pypiserver",
            "run",
            "--interface",
            "127.0.0.1",
            "--port",
            str(port),
            "--passwords",
            str(htpasswd),
            "--authenticate",
            "update",
            # Unknown names must not be redirected to PyPI: this index answers for ours only.
            "--disable-fallback",
            str(packages),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "simple/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.close()
                    pytest.fail((tmp_path / "pypiserver.log").read_text(errors="replace"))
                time.sleep(0.2)
        yield Index(url, packages)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _publish(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **env: str
) -> tuple[int, str]:
    for name in ("HATCH_INDEX_REPO", "HATCH_INDEX_USER", "HATCH_INDEX_AUTH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["--root", str(repo), "publish", "--dist", str(repo / "dist")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def test_publish_then_install_each_extra_from_the_index(
    index: Index,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_repo(tmp_path / "repo")
    cfg = config.load(repo)
    built = build.build(cfg, repo / "dist")
    assert built.source_commit is not None

    code, out = _publish(repo, capsys, monkeypatch, HATCH_INDEX_REPO=index.url)
    assert code == 1
    assert "HATCH_INDEX_USER, HATCH_INDEX_AUTH not set; nothing was uploaded" in out

    code, out = _publish(
        repo,
        capsys,
        monkeypatch,
        HATCH_INDEX_REPO=index.url,
        HATCH_INDEX_USER=USER,
        HATCH_INDEX_AUTH="wrong " + PASSWORD,
    )
    assert code == 1
    assert "refused the credentials in HATCH_INDEX_USER / HATCH_INDEX_AUTH (HTTP 403)" in out
    assert "uploaded: nothing" in out
    assert PASSWORD not in out and USER not in out
    assert "Traceback" not in out
    assert index.snapshot() == {}

    good = {"HATCH_INDEX_REPO": index.url, "HATCH_INDEX_USER": USER, "HATCH_INDEX_AUTH": PASSWORD}
    code, out = _publish(repo, capsys, monkeypatch, **good)
    assert code == 0, out
    assert PASSWORD not in out
    uploaded = [line.split()[-1] for line in out.splitlines() if " uploaded " in line]
    assert uploaded == [p.name for p in built.files]  # flavours first, the meta package last
    on_index = index.snapshot()
    assert {name: sha for name, (sha, _) in on_index.items()} == built.sha256

    # Re-publishing the same version is refused, and the index is left exactly as it was.
    code, out = _publish(repo, capsys, monkeypatch, **good)
    assert code == 1
    assert "version 0.1.0 is already on" in out and "Nothing was uploaded" in out
    assert index.snapshot() == on_index

    meta, commit = cfg.name, built.source_commit
    for flavour in cfg.flavours:
        venv = tmp_path / f"venv-{flavour.key}"
        subprocess.run(
            [*_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True
        )
        python = venv / "bin" / "python"
        # Our index first, PyPI (the default index) only for third-party dependencies: uv's
        # first-index strategy takes each name from the first index that has it, so a
        # same-named project elsewhere cannot stand in for ours (dependency confusion).
        subprocess.run(
            [
                *_uv(),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                "--index",
                index.url + "simple/",
                "--index-strategy",
                "first-index",
                f"{meta}[{flavour.extra}]=={cfg.version}",
            ],
            check=True,
        )
        proc = subprocess.run(
            [
                str(python),
                "-W",
                "error",
                str(HERE / "consumer_release.py"),
                flavour.key,
                flavour.distribution,
                commit,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{flavour.key}: " in proc.stdout

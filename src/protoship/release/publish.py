"""Upload a release to a package index: all of it in order, or a report of exactly what landed.

The target comes from hatch's variables (HATCH_INDEX_REPO, HATCH_INDEX_USER, HATCH_INDEX_AUTH),
so one CI secret setup serves both tools. Uploads go through twine, one file per call, so every
failure is tied to one file and the report of what reached the index is exact. Credentials reach
twine through its environment only, and are scrubbed from anything relayed to the user.

Flavour packages go first and the meta package last, so the index never offers a meta version
whose `==` pinned extras cannot resolve.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.client import HTTPMessage
from pathlib import Path
from typing import IO

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from protoship import dist
from protoship.config import Config
from protoship.errors import PipelineError
from protoship.package import SCHEMA_FILE
from protoship.release import build

# hatch's reserved names for HATCH_INDEX_REPO.
_ALIASES = {"main": "https://upload.pypi.org/legacy/", "test": "https://test.pypi.org/legacy/"}
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_TEXT = (
    "ConnectionError",
    "Connection refused",
    "Connection reset",
    "RemoteDisconnected",
    "Max retries exceeded",
    "timed out",
)
_STATUS = re.compile(r"HTTPError: (\d{3})")


@dataclass(frozen=True)
class Target:
    upload_url: str
    simple_url: str
    # Never part of repr(), so a stray log of the target leaks nothing.
    user: str = field(repr=False)
    auth: str = field(repr=False)

    def scrub(self, text: str) -> str:
        """`text` with the credentials, in every form a tool might echo them, masked."""
        secrets = {self.auth, self.user, urllib.parse.quote(self.auth, safe="")}
        secrets.add(base64.b64encode(f"{self.user}:{self.auth}".encode()).decode())
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def target_from_env(env: Mapping[str, str], simple_url: str | None = None) -> Target:
    """The index and credentials from hatch's variables; refuses when any is missing."""
    repo = env.get("HATCH_INDEX_REPO", "").strip()
    user = env.get("HATCH_INDEX_USER", "")
    auth = env.get("HATCH_INDEX_AUTH", "")
    missing = [
        name
        for name, value in (
            ("HATCH_INDEX_REPO", repo),
            ("HATCH_INDEX_USER", user),
            ("HATCH_INDEX_AUTH", auth),
        )
        if not value
    ]
    if missing:
        raise PipelineError(
            f"{', '.join(missing)} not set; nothing was uploaded. Set HATCH_INDEX_REPO to the "
            "upload URL (or `main` / `test` for PyPI / TestPyPI), HATCH_INDEX_USER to the user "
            "(`__token__` for an API token) and HATCH_INDEX_AUTH to the password or token"
        )
    upload = _ALIASES.get(repo, repo)
    parts = urllib.parse.urlsplit(upload)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PipelineError(
            "HATCH_INDEX_REPO must be an http(s) upload URL, `main` or `test`; nothing was uploaded"
        )
    if parts.username or parts.password:
        raise PipelineError(
            "HATCH_INDEX_REPO contains credentials; put them in HATCH_INDEX_USER and "
            "HATCH_INDEX_AUTH instead (nothing was uploaded)"
        )
    return Target(upload, simple_url or simple_url_for(upload), user, auth)


def simple_url_for(upload_url: str) -> str:
    """Where the index lists its files (PEP 503) for an upload URL, by the common conventions:
    PyPI and TestPyPI's `/legacy/`, and servers such as pypiserver that take uploads at their
    root and list under `/simple/`. Other layouts (devpi's `+simple`) pass --simple-url."""
    parts = urllib.parse.urlsplit(upload_url)
    host = "pypi.org" if parts.hostname == "upload.pypi.org" else parts.netloc
    path = parts.path.rstrip("/")
    if path.endswith("/legacy"):
        path = path[: -len("/legacy")]
    return urllib.parse.urlunsplit((parts.scheme, host, f"{path}/simple/", "", ""))


@dataclass(frozen=True)
class IndexFile:
    name: str
    sha256: str | None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects on the index's own host only. pypiserver redirects unknown projects to
    PyPI; following that would read another index's files as ours."""

    def redirect_request(  # noqa: PLR0917 (the stdlib's signature)
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def index_files(target: Target, project: str) -> dict[str, IndexFile]:
    """The files the index lists for `project` (none if it does not know the project)."""
    url = urllib.parse.urljoin(target.simple_url, canonicalize_name(project) + "/")
    request = urllib.request.Request(url, headers={"Accept": f"{_SIMPLE_JSON}, text/html;q=0.1"})
    if urllib.parse.urlsplit(url).hostname == urllib.parse.urlsplit(target.upload_url).hostname:
        token = base64.b64encode(f"{target.user}:{target.auth}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(_SameHostRedirects())
    try:
        with opener.open(request, timeout=30) as response:
            body = response.read()
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404 or 300 <= exc.code < 400:
            return {}
        if exc.code in (401, 403):
            raise PipelineError(
                f"{target.simple_url} refused the credentials in HATCH_INDEX_USER / "
                f"HATCH_INDEX_AUTH (HTTP {exc.code}); nothing was uploaded"
            ) from None
        raise PipelineError(
            f"cannot list {project} on {target.simple_url} (HTTP {exc.code}), so cannot prove "
            "this version is not there yet; nothing was uploaded"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = target.scrub(str(getattr(exc, "reason", exc)))
        raise PipelineError(
            f"cannot reach {target.simple_url} ({reason}); nothing was uploaded"
        ) from None
    files: dict[str, IndexFile] = {}
    if _SIMPLE_JSON in kind:
        for item in json.loads(body).get("files", []):
            name = str(item["filename"])
            files[name] = IndexFile(name, item.get("hashes", {}).get("sha256"))
        return files
    links = _Links()
    links.feed(body.decode("utf-8", "replace"))
    for href in links.hrefs:
        path, _, fragment = href.partition("#")
        name = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
        sha = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        files[name] = IndexFile(name, sha)
    return files


def _version_of(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def planned(config: Config, dist_dir: Path) -> list[Path]:
    """The release files in `dist_dir`, in publishing order; refuses an incomplete set."""
    expected = build.expected_files(config)
    missing = [name for name in expected if not (dist_dir / name).is_file()]
    if missing:
        raise PipelineError(
            f"{config.rel(dist_dir)}/ lacks {', '.join(missing)}; run `nox -s build` first "
            "(nothing was uploaded)"
        )
    return [dist_dir / name for name in expected]


def check_stamps(files: Sequence[Path], allow_dirty: bool) -> str | None:
    """The source commit stamped into the flavour wheels; refuses unstamped or dirty builds."""
    commits = set()
    for path in files:
        if not path.name.endswith(".whl"):
            continue
        with zipfile.ZipFile(path) as wheel:
            schema = [n for n in wheel.namelist() if n.endswith(f"extra_metadata/{SCHEMA_FILE}")]
            if not schema:
                continue
            data = json.loads(wheel.read(schema[0]))
        if (data.get("source_commit") is None or data.get("source_tree_dirty")) and not allow_dirty:
            raise PipelineError(
                f"{path.name} was built from uncommitted changes (or outside git); build "
                "from a commit with `nox -s build`, or pass --allow-dirty (nothing was uploaded)"
            )
        commits.add(data.get("source_commit"))
    if len(commits) > 1:
        raise PipelineError(
            "the files in dist/ come from different commits; rebuild with `nox -s build`"
        )
    return next(iter(commits), None)


@dataclass
class Report:
    uploaded: list[str] = field(default_factory=list)
    # Already on the index with the same sha256 (only with resume).
    present: list[str] = field(default_factory=list)


def publish(
    config: Config,
    dist_dir: Path,
    target: Target,
    *,
    resume: bool = False,
    allow_dirty: bool = False,
    attempts: int = 3,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Upload the release in `dist_dir`, flavours first; every refusal comes before the first
    upload. With `resume`, files the index already has with the same sha256 are skipped (an
    earlier run that stopped part-way); any other file of this version on the index refuses."""
    files = planned(config, dist_dir)
    check_stamps(files, allow_dirty)
    build.twine_check(files)
    ours = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    version = Version(config.version)
    report = Report()
    taken = []
    for directory in dist.package_dirs(config):
        for name, entry in index_files(target, directory.name).items():
            if _version_of(name) != version:
                continue
            if resume and ours.get(name) is not None and entry.sha256 == ours[name]:
                report.present.append(name)
            else:
                taken.append(name)
    if taken:
        hint = (
            "an earlier upload stopped part-way with other bytes; those files cannot be replaced"
            if resume
            else "bump the version (`nox -s bump`), or, if an earlier publish of this very build "
            "stopped part-way, re-run with --resume"
        )
        raise PipelineError(
            f"version {version} is already on {target.simple_url}: {', '.join(sorted(taken))}; "
            f"{hint}. Nothing was uploaded"
        )
    todo = [p for p in files if p.name not in report.present]
    for path in todo:
        try:
            _upload(target, path, ours[path.name], attempts=attempts, log=log, sleep=sleep)
        except PipelineError as exc:
            # Scrubbed again here: whatever a failure carried must not leak the secrets.
            raise PipelineError(target.scrub(_stopped(exc, report, files, path))) from None
        report.uploaded.append(path.name)
        log(f"uploaded {path.name}")
    return report


def _stopped(exc: PipelineError, report: Report, files: Sequence[Path], failed: Path) -> str:
    done = set(report.uploaded) | set(report.present)
    left = [p.name for p in files if p.name not in done]
    lines = [f"upload stopped at {failed.name}: {exc}"]
    lines.append("uploaded: " + (", ".join(report.uploaded) or "nothing"))
    if report.present:
        lines.append("already there: " + ", ".join(report.present))
    lines.append("not uploaded: " + ", ".join(left))
    if report.uploaded or report.present:
        lines.append(
            "The index now has part of this release. Fix the cause and re-run with --resume "
            "(files already there are checked by sha256 and skipped)"
        )
    return "\n".join(lines)


def _upload(
    target: Target,
    path: Path,
    sha256: str,
    *,
    attempts: int,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> None:
    """One file, retried on transient failures. Before a retry the index is asked whether the
    failed attempt landed after all (a timeout after the server stored the file), since a
    second upload of the same file is refused."""
    for attempt in range(1, attempts + 1):
        status, output = _twine_upload(target, path)
        if status is None:
            return
        transient = status in _TRANSIENT_STATUS or (
            status == 0 and any(t in output for t in _TRANSIENT_TEXT)
        )
        if not transient:
            raise PipelineError(_explain(target, status, output))
        if attempt == attempts:
            raise PipelineError(
                f"still failing after {attempts} attempts: {_explain(target, status, output)}"
            )
        log(f"transient failure uploading {path.name} (attempt {attempt}/{attempts}); retrying")
        sleep(2.0 ** (attempt - 1))
        project = _project_of(path.name)
        landed = index_files(target, project).get(path.name)
        if landed is not None and landed.sha256 in (sha256, None):
            return


def _project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return str(parse_wheel_filename(filename)[0])
    return str(parse_sdist_filename(filename)[0])


def _twine_upload(target: Target, path: Path) -> tuple[int | None, str]:
    """(None, output) on success; else (HTTP status or 0 when there was none, scrubbed output)."""
    # Credentials go through twine's environment, never argv (visible in the process list);
    # other TWINE_* settings of the caller must not redirect the upload.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    env |= {
        "TWINE_USERNAME": target.user,
        "TWINE_PASSWORD": target.auth,
        "TWINE_REPOSITORY_URL": target.upload_url,
        "TWINE_NON_INTERACTIVE": "1",
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--disable-progress-bar", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    output = target.scrub(f"{proc.stdout}\n{proc.stderr}".strip())
    if proc.returncode == 0:
        return None, output
    if "No module named twine" in output:
        raise PipelineError("twine is not installed; install the `release` dependency group")
    found = _STATUS.search(output)
    return (int(found.group(1)) if found else 0), output


def _explain(target: Target, status: int, output: str) -> str:
    if status in (401, 403):
        return (
            f"{target.upload_url} refused the credentials in HATCH_INDEX_USER / "
            f"HATCH_INDEX_AUTH (HTTP {status})"
        )
    if status in (400, 409) and "exist" in output.lower():
        return f"the index already has this file (HTTP {status})"
    tail = "\n".join(output.splitlines()[-6:])
    return f"twine upload failed (HTTP {status or 'none'}):\n{tail}"

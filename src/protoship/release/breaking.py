"""Compare the working tree's schema with a release: what buf calls breaking, what was added.

The old side is compiled from the release's own tree (exported from git) with that tree's
configuration, through the same compile step as generation: buf cannot build the module from a
directory offline (googleapis imports need the BSR), and one compiler on both sides means a
difference in the images is a difference in the schema.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from protoship import config as config_mod
from protoship import image as image_mod
from protoship.config import Config
from protoship.errors import PipelineError
from protoship.release import bufrun, git
from protoship.release import changes as diff
from protoship.release.changes import Changes, Level


@dataclass(frozen=True)
class Comparison:
    # What the schema was compared with: a release tag or the REF the user named.
    against: str
    commit: str
    # The baseline's version: from its tag, else from that tree's [tool.protoship] version.
    version: Version
    breaks: tuple[bufrun.Finding, ...]
    changes: Changes
    identical: bool

    @property
    def needed(self) -> Level:
        return diff.needed(bool(self.breaks), self.changes)


def last_release(root: Path, *, below: Version | None = None) -> git.Release | None:
    """The newest release tag reachable from HEAD (older than `below`, if given)."""
    for release in git.releases(root):
        if below is None or release.version < below:
            return release
    return None


def no_release_message(config: Config) -> str:
    return (
        f"no release tag ({git.TAG_PREFIX}<version>, e.g. {git.TAG_PREFIX}{config.version}) is "
        "reachable from HEAD, so there is nothing to compare against. Tag the first release "
        f"with `git tag {git.TAG_PREFIX}{config.version}`, or compare with a commit or branch: "
        "`nox -s breaking -- --against REF`"
    )


def compare(
    config: Config,
    *,
    against: str | None = None,
    use: Sequence[str] = (),
    below: Version | None = None,
) -> Comparison | None:
    """Compare the working tree with `against` (default: the last release tag).

    Returns None when `against` is not given and there is no release yet.
    """
    if not git.is_repo(config.root):
        raise PipelineError(
            f"{config.root} is not in a git repository; releases are git tags (v1.2.0)"
        )
    version: Version | None = None
    if against is None:
        release = last_release(config.root, below=below)
        if release is None:
            return None
        label, commit, version = release.tag, release.commit, release.version
    else:
        label, commit = against, git.resolve(config.root, against)
    with tempfile.TemporaryDirectory(prefix="protoship-breaking-") as tmp:
        work = Path(tmp)
        (work / "new").mkdir()
        (work / "old").mkdir()
        current = image_mod.compile_image(config, work / "new")
        old_root = git.export(config.root, commit, work / "tree")
        try:
            old_config = config_mod.load(old_root)
            old = image_mod.compile_image(old_config, work / "old")
        except PipelineError as exc:
            raise PipelineError(
                f"cannot compile the schema at {label} ({commit[:12]}) to compare with: {exc}"
            ) from None
        if version is None:
            version = Version(old_config.version)
        findings = bufrun.run(config, "breaking", current.path, against=old.path, use=use)
        added_removed = diff.compare(
            diff.elements(old.path, {f.path for f in old.files}),
            diff.elements(current.path, {f.path for f in current.files}),
        )
        return Comparison(
            against=label,
            commit=commit,
            version=version,
            breaks=tuple(findings),
            changes=added_removed,
            identical=old.digest == current.digest,
        )

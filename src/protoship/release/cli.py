"""The release subcommands: lint, breaking, bump, dist (release build) and publish.

protoship.cli adds these to its parser and hands matching commands to `run`; errors a user can
fix come back as PipelineError and are printed there without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from packaging.version import Version

from protoship import config as config_mod
from protoship.errors import PipelineError
from protoship.release import breaking, build, git, lint, publish, version

COMMANDS = ("lint", "breaking", "bump", "dist", "publish")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("lint", help="buf lint (buf.yaml rules) on the image and buf format -d")
    brk = sub.add_parser("breaking", help="buf breaking against the last release tag")
    brk.add_argument("--against", metavar="REF", help="tag, branch or commit to compare with")
    _use(brk)
    bump = sub.add_parser(
        "bump", help="set the version everywhere; without an argument, print the bump needed"
    )
    bump.add_argument("to", nargs="?", metavar="major|minor|patch|X.Y.Z")
    _use(bump)
    dist = sub.add_parser(
        "dist", help="release build: gate, stamp the source commit, build twice, twine check"
    )
    dist.add_argument("--out", type=Path, default=Path("dist"), help="output directory")
    dist.add_argument(
        "--allow-dirty",
        action="store_true",
        help="build with uncommitted changes (marked source_tree_dirty; publish refuses it)",
    )
    _use(dist)
    pub = sub.add_parser("publish", help="upload dist/ to HATCH_INDEX_REPO, flavours first")
    pub.add_argument("--dist", type=Path, default=Path("dist"), help="directory of the build")
    pub.add_argument(
        "--simple-url", help="the index's PEP 503 listing, if not <upload URL>/simple/"
    )
    pub.add_argument(
        "--resume",
        action="store_true",
        help="finish a publish that stopped part-way (skips files the index has, by sha256)",
    )
    pub.add_argument(
        "--allow-dirty", action="store_true", help="publish a build from uncommitted changes"
    )


def _use(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--use",
        action="append",
        default=[],
        metavar="CATEGORY",
        help="breaking rule category or rule instead of buf.yaml's (FILE, PACKAGE, WIRE_JSON, "
        "WIRE); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.root)
    if args.command == "lint":
        return _lint(cfg)
    if args.command == "breaking":
        return _breaking(cfg, args.against, args.use)
    if args.command == "bump":
        return _bump(cfg, args.to, args.use)
    if args.command == "dist":
        return _dist(cfg, args.out, args.allow_dirty, args.use)
    return _publish(cfg, args.dist, args.simple_url, args.resume, args.allow_dirty)


def _lint(cfg: config_mod.Config) -> int:
    result = lint.lint(cfg)
    for finding in result.findings:
        print(finding)
    if result.format_diff:
        print(result.format_diff, end="")
        print(f"protoship: {cfg.rel(cfg.module)}/ is not formatted; run `buf format -w`")
    if result:
        return 1
    print(f"protoship: {cfg.rel(cfg.module)}/ passes buf lint and buf format")
    return 0


def _breaking(cfg: config_mod.Config, against: str | None, use: list[str]) -> int:
    comparison = breaking.compare(cfg, against=against, use=use)
    if comparison is None:
        raise PipelineError(breaking.no_release_message(cfg))
    for finding in comparison.breaks:
        print(finding)
    if comparison.breaks:
        print(
            f"protoship: {len(comparison.breaks)} breaking change(s) against {comparison.against}; "
            "release them as a major version (`nox -s bump -- major`) or undo them",
            file=sys.stderr,
        )
        return 1
    print(f"protoship: no breaking changes against {comparison.against}")
    return 0


def _bump(cfg: config_mod.Config, to: str | None, use: list[str]) -> int:
    last = breaking.last_release(cfg.root) if git.is_repo(cfg.root) else None
    if to is not None:
        new = version.resolve(cfg.version, to)
        if last is not None and Version(new) <= last.version:
            raise PipelineError(
                f"{new} is not newer than the last release {last.tag}; pick a higher version"
            )
        if new == cfg.version:
            print(f"protoship: version is already {new}")
            return 0
        written = version.write(cfg, new)
        print(f"protoship: version {written.old} -> {written.new}")
        for path in written.files:
            print(f"  {cfg.rel(path)}")
        return 0
    comparison = breaking.compare(cfg, use=use)
    if comparison is None:
        print(f"protoship: no release yet; the first release is {cfg.version} (`git tag v...`)")
        return 0
    for finding in comparison.breaks:
        print(f"breaking: {finding}")
    for element in comparison.changes.added:
        print(f"added: {element}")
    for element in comparison.changes.removed:
        print(f"removed: {element}")
    level = comparison.needed
    if comparison.identical:
        print(f"protoship: schema unchanged since {comparison.against}")
    if version.is_bump_of(cfg.version, comparison.version, level):
        print(
            f"protoship: needs a {level} bump over {comparison.against}; version {cfg.version} "
            "already is one"
        )
    else:
        new = version.next_version(cfg.version, level)
        print(
            f"protoship: needs a {level} bump over {comparison.against}: "
            f"`nox -s bump -- {level}` ({cfg.version} -> {new})"
        )
    return 0


def _dist(cfg: config_mod.Config, out: Path, allow_dirty: bool, use: list[str]) -> int:
    built = build.build(cfg, out, allow_dirty=allow_dirty, use=use)
    for warning in built.warnings:
        print(f"protoship: warning: {warning}", file=sys.stderr)
    for path in built.files:
        print(f"{built.sha256[path.name]}  {cfg.rel(path)}")
    source = built.source_commit or "none"
    print(
        f"protoship: {len(built.files)} files, built twice with identical bytes, twine check "
        f"--strict passed; source commit {source}"
        + (" (uncommitted changes)" if built.dirty else "")
        + (f"; compared with {built.baseline}" if built.baseline else "")
    )
    return 0


def _publish(
    cfg: config_mod.Config, dist_dir: Path, simple_url: str | None, resume: bool, dirty: bool
) -> int:
    target = publish.target_from_env(os.environ, simple_url)
    report = publish.publish(
        cfg,
        dist_dir,
        target,
        resume=resume,
        allow_dirty=dirty,
        log=lambda message: print(f"protoship: {message}"),
    )
    print(
        f"protoship: published {cfg.name} {cfg.version} to {target.simple_url} "
        f"({len(report.uploaded)} uploaded"
        + (f", {len(report.present)} already there" if report.present else "")
        + ")"
    )
    return 0

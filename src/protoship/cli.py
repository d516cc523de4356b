"""Command line: `python -m protoship generate [--check] [--force] [--strict]`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from protoship import config, dist, pipeline
from protoship.errors import PipelineError
from protoship.release import cli as release_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protoship")
    parser.add_argument("--root", type=Path, default=Path(), help="project root (default: .)")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate the packages from the buf module")
    gen.add_argument(
        "--check",
        action="store_true",
        help="regenerate aside and fail, listing files, if the output differs",
    )
    gen.add_argument("--force", action="store_true", help="regenerate even if nothing changed")
    gen.add_argument(
        "--strict", action="store_true", help="fail instead of leaving files out of a flavour"
    )
    gen.add_argument("-v", "--verbose", action="store_true", help="print each stage")
    build = sub.add_parser("build", help="build wheels and sdists of every package")
    build.add_argument("--out", type=Path, default=Path("dist"), help="output directory")
    build.add_argument("--wheel-only", action="store_true", help="skip sdists")
    release_cli.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "build":
        return _build(args.root, args.out, sdist=not args.wheel_only)
    if args.command in release_cli.COMMANDS:
        try:
            return release_cli.run(args)
        except PipelineError as exc:
            print(f"protoship: error: {exc}", file=sys.stderr)
            return 1
    verbose = args.verbose or sys.stderr.isatty()
    started = time.monotonic()

    def progress(message: str) -> None:
        if verbose:
            elapsed = time.monotonic() - started
            print(f"protoship: [{elapsed:5.1f}s] {message}...", file=sys.stderr, flush=True)

    try:
        result = pipeline.generate(
            args.root, check=args.check, force=args.force, strict=args.strict, progress=progress
        )
    except PipelineError as exc:
        print(f"protoship: error: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"protoship: warning: {warning}", file=sys.stderr)
    took = time.monotonic() - started
    if result.status == "checked":
        drift = result.drift
        if drift:
            print("protoship: packages/ differs from a fresh generation:", file=sys.stderr)
            for label, paths in (
                ("changed", drift.changed),
                ("missing", drift.missing),
                ("unexpected", drift.unexpected),
            ):
                for path in paths:
                    print(f"  {label}: {path}", file=sys.stderr)
            print("Run `nox -s generate` and commit the result.", file=sys.stderr)
            return 1
        print(f"protoship: packages/ is up to date ({result.files} files, {took:.1f}s)")
    elif result.status == "unchanged":
        print(f"protoship: nothing changed ({took:.2f}s)")
    else:
        print(
            f"protoship: generated {', '.join(result.packages)} ({result.files} files, {took:.1f}s)"
        )
    return 0


def _build(root: Path, out: Path, *, sdist: bool) -> int:
    try:
        built = dist.build(config.load(root), out, sdist=sdist)
    except PipelineError as exc:
        print(f"protoship: error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(path)
    return 0

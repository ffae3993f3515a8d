"""``otelfin codes lint`` and ``otelfin codes list``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otelfin.catalogue import CatalogueError, lint_files, load_catalogue
from otelfin.cli._common import command
from otelfin.cli._output import json_text


def register(sub: Any) -> None:
    _, codes_sub = command(sub, "codes", help="lint and list error-code catalogues", required=True)

    lint = codes_sub.add_parser(
        "lint",
        help="check catalogue files (format, duplicates, domains, severities, statuses)",
        description="Report every problem as file:line: reason. Exit 1 when any is found.",
    )
    lint.add_argument("files", nargs="+", metavar="FILE")
    lint.add_argument("--format", choices=("text", "json"), default="text")
    lint.set_defaults(func=_lint)

    listing = codes_sub.add_parser(
        "list", help="print the effective catalogue (packaged default plus your files)"
    )
    from otelfin.cli._logs import catalogue_argument

    catalogue_argument(listing)
    listing.add_argument("--no-default", action="store_true", help="leave out the packaged codes")
    listing.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    listing.set_defaults(func=_list)


def _lint(args: argparse.Namespace) -> int:
    findings = lint_files(args.files)
    # A file that cannot be read or parsed at all (missing, not UTF-8, malformed YAML, an
    # alias, too large) is an input error, exit 2, not a lint finding: nothing was linted.
    fatal = [f for f in findings if f.fatal]
    if fatal:
        for finding in fatal:
            print(f"otelfin codes lint: {finding}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json_text([{"path": f.path, "line": f.line, "reason": f.reason} for f in findings]))
    else:
        for finding in findings:
            print(finding)
        from otelfin.tools._text import plural

        print(
            f"{plural(len(findings), 'problem')} in {plural(len(args.files), 'file')}",
            file=sys.stderr,
        )
    return 1 if findings else 0


def _list(args: argparse.Namespace) -> int:
    try:
        catalogue = load_catalogue(*args.catalogue, include_default=not args.no_default)
    except CatalogueError as exc:
        print(exc, file=sys.stderr)
        return 2
    entries = sorted(catalogue.values(), key=lambda e: e.code)
    if args.format == "json":
        rows = [
            {
                "code": e.code,
                "message": e.message,
                "severity": e.severity,
                "retryable": e.retryable,
                "http_status": e.http_status,
                "grpc_status": e.grpc_status,
                "owner": e.owner,
                "description": e.description,
            }
            for e in entries
        ]
        print(json_text(rows, indent=2))
    elif args.format == "markdown":
        print("| code | message | severity | retryable | HTTP | gRPC | owner |")
        print("|---|---|---|---|---|---|---|")
        for e in entries:
            print(
                f"| {e.code} | {e.message} | {e.severity} | {'yes' if e.retryable else 'no'} "
                f"| {e.http_status or ''} | {e.grpc_status or ''} | {e.owner or ''} |"
            )
    else:
        for e in entries:
            print(f"{e.code:<12} {e.severity:<9} {e.message}")
    return 0

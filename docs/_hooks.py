"""MkDocs hook: the reference pages generated from the code at build time.

A page holding ``<!-- generated: settings -->`` gets the settings table made from
``otelfin/_settings.py``; ``<!-- generated: cli -->`` gets every ``otelfin`` command's help,
taken from the argparse parser the console script runs; ``<!-- generated: codes -->`` the
packaged error-code catalogue. Nothing is committed that could
drift: each build renders what the code says now.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

SETTINGS_MARKER = "<!-- generated: settings -->"
CLI_MARKER = "<!-- generated: cli -->"
CODES_MARKER = "<!-- generated: codes -->"


def settings_markdown() -> str:
    """The settings table, one row per setting of ``otelfin._settings.SETTINGS``."""
    from otelfin import _settings

    return _settings.markdown_table()


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:  # argparse keeps its sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _subcommands(child, (*path, name))


def cli_markdown() -> str:
    """One section per ``otelfin`` command: its purpose and its ``--help``, as the CLI prints it."""
    from otelfin.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width: fix it
    try:
        parts: list[str] = []
        for path, parser in _subcommands(build_parser(), ("otelfin",)):
            heading = "#" * min(len(path) + 1, 4)
            parts.append(f"{heading} `{' '.join(path)}`\n")
            parts.append(f"```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def codes_markdown() -> str:
    """The packaged error-code catalogue (``otelfin/errorcodes.yaml``) as a table."""
    from otelfin.catalogue import default_catalogue

    rows = [
        "| code | message | severity | retryable | HTTP | gRPC | owner |",
        "|---|---|---|---|---|---|---|",
    ]
    for code, e in sorted(default_catalogue().codes.items()):
        message = e.message.replace("|", "\\|")
        retryable = "yes" if e.retryable else "no"
        rows.append(
            f"| `{code}` | {message} | {e.severity} | {retryable} "
            f"| {e.http_status or ''} | {e.grpc_status or ''} | {e.owner or ''} |"
        )
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the markers with the generated reference."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_markdown())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if CODES_MARKER in markdown:
        markdown = markdown.replace(CODES_MARKER, codes_markdown())
    return markdown

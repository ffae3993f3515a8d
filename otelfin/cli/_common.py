"""What the command modules share: a command with its actions, and the exit for usage errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["command", "print_help", "usage_error"]


def command(
    subparsers: Any, name: str, help: str, *, required: bool = False
) -> tuple[argparse.ArgumentParser, Any]:
    """The ``otelfin NAME`` parser and the subparsers of its actions (``args.NAME_command``).

    Without an action it exits 2: with argparse's usage error when ``required`` (the actions
    are then shown as ``ACTION``, as ``audit``, ``codes`` and ``logs`` always did), else after
    printing the command's help (actions shown as ``COMMAND``).
    """
    parser = subparsers.add_parser(name, help=help)
    metavar = "ACTION" if required else "COMMAND"
    actions = parser.add_subparsers(dest=f"{name}_command", metavar=metavar, required=required)
    if not required:
        parser.set_defaults(func=lambda args: print_help(parser))
    return parser, actions


def print_help(parser: argparse.ArgumentParser) -> int:
    """Print ``parser``'s help to stderr; the usage-error exit status."""
    parser.print_help(sys.stderr)
    return 2


def usage_error(message: str) -> int:
    """Print ``otelfin: error: message`` to stderr; the usage-error exit status."""
    print(f"otelfin: error: {message}", file=sys.stderr)
    return 2

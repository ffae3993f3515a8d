"""The ``otelfin`` command. Thin: parse arguments, call the library, format the output.

Exit status everywhere: 0 ok, 1 findings, 2 usage or input error. Flags that mirror a setting
(catalogue, SLO, buckets, labels, files) default from the same environment variables as
``configure()`` (:mod:`otelfin.cli._env`); a flag given wins.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Each module defines ``register(subparsers)``; the parser it adds sets ``func`` to a callable
# taking the parsed namespace and returning the exit status.
_COMMAND_MODULES = (
    "otelfin.cli._audit",
    "otelfin.cli._demo",
    "otelfin.cli._codes",
    "otelfin.cli._logs",
    "otelfin.cli._metrics",
    "otelfin.cli._traces",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render ``--help`` in docs)."""
    from otelfin import __version__

    parser = _Parser(
        prog="otelfin",
        description="Observability toolkit for payment services.",
    )
    parser.add_argument("--version", action="version", version=f"otelfin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (also used by the console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    from otelfin.cli._env import fill_from_settings

    problem = fill_from_settings(args)
    if problem is not None:
        print(f"otelfin: error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, but never report success, since the
        # findings it did not read may exist. 141 = 128 + SIGPIPE, what a shell tool exits with.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass  # stdout is not a real file (tests); nothing is flushed to it at exit
        return 141


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())

"""The ``otelfin`` command. Thin: parse arguments, call the library, format the output.

Exit status everywhere: 0 ok, 1 findings, 2 usage or input error. Flags that mirror a setting
(catalogue, SLO, buckets, labels, files) default from the same environment variables as
``configure()`` (:mod:`otelfin.cli._env`); a flag given wins.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

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


class _MaskedText(io.TextIOBase):
    """A text stream that masks card numbers and secret pairs in each line it passes on.

    Every command quotes what it read (a span name, a label value, a line of a file it could
    not parse); whatever the input held, the terminal and the CI log get it masked. Whole lines
    are scrubbed (a card number split across two ``write`` calls is still one line); the rest
    goes out at ``flush``. Bytes written to ``.buffer`` (``logs filter``'s pass-through of
    validated lines) are the input's own, unchanged.
    """

    def __init__(self, stream: TextIO) -> None:
        from otelfin.scrub import scrub_text

        self._stream = stream
        self._scrub = scrub_text
        self._pending = ""

    def write(self, text: str) -> int:
        pending = self._pending + text
        end = pending.rfind("\n") + 1
        if end:
            self._stream.write(self._scrub(pending[:end]))
        self._pending = pending[end:]
        return len(text)

    def flush(self) -> None:
        if self._pending:
            rest, self._pending = self._pending, ""
            self._stream.write(self._scrub(rest))
        self._stream.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # buffer, encoding, fileno, isatty, ...
        return getattr(self._stream, name)


@contextmanager
def _masked_output() -> Iterator[None]:
    """stdout and stderr masked for one command (fails closed: if the scrubber cannot be
    loaded, the command does not run)."""
    real_out, real_err = sys.stdout, sys.stderr
    out, err = _MaskedText(real_out), _MaskedText(real_err)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = real_out, real_err
        for stream in (out, err):
            # the reader went away (| head) or the stream was closed
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (also used by the console script).

    Everything a command prints, on stdout and stderr, has card numbers and secret pairs
    masked (:class:`_MaskedText`).
    """
    try:
        with _masked_output():
            return _run(argv)
    except BrokenPipeError:
        return _broken_pipe()


def _run(argv: Sequence[str] | None) -> int:
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


def _broken_pipe() -> int:
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

"""Include entries for the program's main module (``python app.py``, ``python -m pkg.mod``).

A script or a ``-m`` module runs as ``__main__``, never under its own name, so the post-import
hook for ``app`` or ``pkg.mod`` never fires. Worse, when the include list is applied (by
``opentelemetry-instrument`` before the program starts, or by ``configure()`` at its top) the
functions it names are not defined yet: the ``def`` statements run later, and the program's
last lines call them straight away.

So otelfin watches the main module's top-level code while it defines things: a trace function
on that one frame patches each listed function right after its ``def`` runs, and is removed as
soon as the last top-level ``def``/``class`` (found in the source with ``ast``) has run, before
the program's own work starts. Until then every Python call on the main thread pays for one
trace-function call (only while the top of the script runs: imports and definitions); after it,
nothing. A debugger or coverage tool that already traces the thread is left alone (entries are
then applied to what exists, and the rest reported).

Entries name the main module as ``__main__:f``, by the script's file name (``app:f`` for
``python app.py``) or by the ``-m`` module name (``pkg.mod:f``).
"""

from __future__ import annotations

import ast
import os
import sys
import threading
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

__all__ = ["main_module_names", "watch_main"]

_CO_NEWLOCALS = 0x0002


def main_module_names() -> set[str]:
    """The names an include entry may use for the program's main module."""
    names = {"__main__"}
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        names.add(spec.name)
    argv = list(getattr(sys, "orig_argv", []))[1:]
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            names.add(argv[i + 1])
            break
        if arg in ("-c", "-"):
            break
        if arg.startswith("-"):
            continue
        if arg.endswith(".py"):
            names.add(os.path.splitext(os.path.basename(arg))[0])
        break
    return names


def _last_definition_line(path: str | None) -> int:
    """The last line of the last top-level ``def``/``class`` (also inside top-level if/try)."""
    if not path:
        return 0
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return 0
    last = 0
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            last = max(last, node.end_lineno or node.lineno)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    if isinstance(child, ast.ExceptHandler):
                        todo.extend(child.body)
                    else:
                        todo.append(child)
    return last


class _Watcher:
    """Traces the main module's top-level frame until its last definition has run."""

    def __init__(self, main: ModuleType, apply: Callable[[ModuleType, bool], None]) -> None:
        self.main = main
        self.apply = apply
        self.frame: FrameType | None = None
        self.size = -1
        self.stopped = False
        self.file: str | None = None
        self.last_line = 0

    def _start_frame(self, frame: FrameType) -> None:
        self.frame = frame
        self.file = frame.f_code.co_filename
        self.last_line = _last_definition_line(getattr(self.main, "__file__", None) or self.file)

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.stopped:
            return None
        if self.frame is None:
            if frame.f_globals is self.main.__dict__ and frame.f_code.co_name == "<module>":
                self._start_frame(frame)
                return self.local_trace
            return None
        code = frame.f_code
        if (
            frame.f_back is self.frame
            and code.co_filename == self.file
            and code.co_flags & _CO_NEWLOCALS
            and not code.co_name.startswith("<")
        ):
            self.stop()  # the program calls its own functions: its definitions are done
        return None

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.stopped or frame is not self.frame:
            return None
        if event == "line":
            size = len(self.main.__dict__)
            if size != self.size:
                self.size = size
                self.apply(self.main, False)
            if self.last_line and frame.f_lineno > self.last_line:
                self.stop()
                return None
        elif event == "return":
            self.stop()
            return None
        return self.local_trace

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.apply(self.main, True)
        finally:
            if sys.gettrace() == self.global_trace:
                sys.settrace(None)
            if self.frame is not None:
                self.frame.f_trace = None
            self.frame = None


def watch_main(apply: Callable[[ModuleType, bool], None]) -> bool:
    """Run ``apply(__main__, final)`` now and after each top-level definition still to come.

    ``final`` is True on the last call (report what never matched then). Returns False when
    the main module cannot be watched (not the main thread, or a tracer such as a debugger is
    already active): ``apply`` then ran once, final, on what exists now.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return False
    if threading.current_thread() is not threading.main_thread() or sys.gettrace() is not None:
        apply(main, True)
        return False
    apply(main, False)
    watcher = _Watcher(main, apply)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back  # type: ignore[assignment]
    if frame is not None:  # configure() at the top of the running script
        watcher._start_frame(frame)
        if watcher.last_line and frame.f_lineno > watcher.last_line:
            apply(main, True)
            return True  # everything is defined already
        frame.f_trace = watcher.local_trace
    sys.settrace(watcher.global_trace)
    return True

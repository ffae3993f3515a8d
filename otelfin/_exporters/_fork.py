"""What export objects do in a forked child: one at-fork handler for all of them, and a
flush when a fork-started ``multiprocessing`` worker ends."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

from otelfin import _internal

__all__: list[str] = []


#: Objects inherited across fork() that a child must not touch again (a file object whose
#: lock or buffer was mid-write in the parent; an HTTP session sharing the parent's socket).
_inherited: list[Any] = []
_fork_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


class _State:
    __slots__ = ("hook_installed",)

    def __init__(self) -> None:
        #: Whether the one at-fork handler is registered (it cannot be unregistered).
        self.hook_installed = False


_state = _State()


def _after_fork(obj: Any, hook: Callable[[Any], None]) -> None:
    """Call ``hook(obj)`` in every child forked while ``obj`` is alive (one at-fork handler for
    all: ``os.register_at_fork`` has no way to unregister, so per-object ones would pile up)."""
    _fork_hooks[obj] = hook
    if not _state.hook_installed and hasattr(os, "register_at_fork"):
        _state.hook_installed = True
        os.register_at_fork(after_in_child=_run_fork_hooks)


def _run_fork_hooks() -> None:
    for obj, hook in list(_fork_hooks.items()):
        try:
            hook(obj)
        except Exception as exc:
            _internal.report("exporter.after_fork", exc)


def _register_multiprocessing_hook(pipeline: Any) -> None:
    import multiprocessing.util

    multiprocessing.util.register_after_fork(pipeline, _in_multiprocessing_child)


def _in_multiprocessing_child(pipeline: Any) -> None:
    """In a fork-started ``multiprocessing`` worker, flush when the worker ends normally.

    A worker never runs ``atexit`` (it leaves through ``os._exit``), so neither the provider's
    exit hook nor otelfin's own flushes its spans; ``multiprocessing``'s finalizers do run.
    ``Pool.terminate()`` (the end of a ``with Pool()`` block) ends idle workers with SIGTERM
    instead: the worker inherited otelfin's SIGTERM handler (:mod:`otelfin._lifecycle`), which
    flushes before the signal takes its default course. Without both a pool's spans were lost.
    """
    import multiprocessing.util

    multiprocessing.util.Finalize(None, pipeline._flush_at_exit, exitpriority=10)

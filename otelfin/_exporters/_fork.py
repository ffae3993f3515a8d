"""What export objects do in a forked child: one at-fork handler for all of them, and a
flush when a fork-started ``multiprocessing`` worker ends."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from otelfin import _internal

__all__: list[str] = []


#: Objects inherited across fork() that a child must not touch again (a file object whose
#: lock or buffer was mid-write in the parent; an HTTP session sharing the parent's socket).
_inherited: list[Any] = []
_fork_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


#: How long fork() waits for an import otelfin started on its export thread to finish.
IMPORT_WAIT_S = 5.0


class _State:
    __slots__ = (
        "gate",
        "gate_held",
        "gate_hooked",
        "hook_installed",
        "lock",
        "multiprocessing_hooked",
        "multiprocessing_ready",
        "waiting",
    )

    def __init__(self) -> None:
        #: Whether the one at-fork handler is registered (it cannot be unregistered).
        self.hook_installed = False
        #: Held while otelfin imports a module late on a thread of its own (see late_import).
        self.gate = threading.Lock()
        self.gate_held = False
        self.gate_hooked = False
        self.lock = threading.Lock()
        #: Pipelines made before ``multiprocessing.util`` was imported, registered when it is.
        self.waiting: weakref.WeakSet[Any] = weakref.WeakSet()
        #: The post-import hook on ``multiprocessing.util`` is registered / has run.
        self.multiprocessing_hooked = False
        self.multiprocessing_ready = False


_state = _State()


@contextmanager
def late_import() -> Iterator[None]:
    """Hold fork() back while this block imports modules on one of otelfin's threads.

    A module being imported is locked until its import ends. A process forked in the middle
    inherits that lock held by a thread that does not exist in the child, and the child's first
    import of the same module waits forever: a child whose first export built the exporter (or
    loaded the OTLP/JSON encoder) hung until the shutdown deadline and lost its spans. The
    at-fork hooks below make fork() wait (at most ``IMPORT_WAIT_S``) for the block to end.
    """
    if not _state.gate_hooked and hasattr(os, "register_at_fork"):
        _state.gate_hooked = True
        os.register_at_fork(
            before=_gate_before_fork,
            after_in_parent=_gate_after_in_parent,
            after_in_child=_gate_after_in_child,
        )
    with _state.gate:
        yield


def _gate_before_fork() -> None:
    _state.gate_held = _state.gate.acquire(timeout=IMPORT_WAIT_S)


def _gate_after_in_parent() -> None:
    if _state.gate_held:
        _state.gate_held = False
        _state.gate.release()


def _gate_after_in_child() -> None:
    _state.gate = threading.Lock()  # the parent's may be held by a thread the child lacks
    _state.gate_held = False


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
    """Flush ``pipeline`` at the end of fork-started ``multiprocessing`` workers (see
    :func:`_in_multiprocessing_child`).

    Only a process that imported ``multiprocessing`` starts such workers, so until
    ``multiprocessing.util`` is imported the pipeline waits here and a post-import hook
    registers it then (before any worker can start). ``configure()`` no longer imports
    ``multiprocessing`` itself: ~5 ms of start-up (its contexts, ``pickle``, sockets) that a
    service without worker processes never needed.
    """
    with _state.lock:
        ready = _state.multiprocessing_ready
        if not ready:
            _state.waiting.add(pipeline)
            hook = not _state.multiprocessing_hooked
            _state.multiprocessing_hooked = True
    if ready:
        import multiprocessing.util

        multiprocessing.util.register_after_fork(pipeline, _in_multiprocessing_child)
    elif hook:
        import wrapt

        # Runs now when multiprocessing.util is imported already, else at its import.
        wrapt.register_post_import_hook(_multiprocessing_imported, "multiprocessing.util")


def _multiprocessing_imported(module: Any) -> None:
    """``multiprocessing.util`` is imported: register the pipelines waiting for it."""
    with _state.lock:
        _state.multiprocessing_ready = True
        waiting = list(_state.waiting)
        _state.waiting.clear()
    for pipeline in waiting:
        module.register_after_fork(pipeline, _in_multiprocessing_child)


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

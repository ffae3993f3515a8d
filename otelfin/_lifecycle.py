"""Flush finished spans when the process ends, however the host ends it.

The SDK flushes from ``atexit``, which runs on a normal exit (``sys.exit``, the end of the
script, an uncaught ``KeyboardInterrupt``: SIGINT's default handler raises it) but not when a
signal's *default* disposition kills the process. That is what SIGTERM does to a plain consumer
loop, and what uvicorn does on purpose: it restores the handlers it found and re-raises the
signal it caught, so the process dies by SIGTERM and ``atexit`` never runs.

otelfin covers those two paths and nothing else, without changing how the process ends:

- a signal whose disposition is ``SIG_DFL`` gets a handler that flushes (bounded by
  ``FLUSH_TIMEOUT_S``, in a helper thread so a lock the interrupted code holds cannot hang
  it), puts ``SIG_DFL`` back and raises the same signal again: the host still dies by it.
  A handler the host installed (gunicorn's, uvicorn's, the application's own) is never
  replaced, and one installed later simply takes otelfin's place (uvicorn saves and restores
  it, so its re-raise lands in it);
- ``signal.raise_signal`` is wrapped so a process re-raising SIGTERM/SIGINT under ``SIG_DFL``
  (uvicorn after it restored the default it found) flushes first, then raises as asked;
- an ``atexit`` hook flushes on normal exit, also for providers the application created with
  ``shutdown_on_exit=False``.

Installed by ``configure()`` from the main thread (Python allows signal handlers only there);
``configure(handle_signals=False)`` turns the signal part off. Process-wide hooks are
inherently global state, which is why this is a small top-level module of its own.
"""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from otelfin import _internal

__all__ = ["FLUSH_TIMEOUT_S", "FREEZE_DELAY_S", "freeze_heap", "install", "uninstall"]

#: Upper bound on the flush before a dying process is let go (Kubernetes gives 30 s by
#: default between SIGTERM and SIGKILL; this leaves the host most of it).
FLUSH_TIMEOUT_S = 5.0

_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)) if s is not None
)


class _State:
    """The process hooks otelfin installed, and the flush they call."""

    __slots__ = (
        "atexit_registered",
        "flush",
        "freeze_timer",
        "lock",
        "original_raise_signal",
        "ours",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flush: Callable[[float], object] | None = None
        #: The signals whose disposition is otelfin's handler.
        self.ours: set[int] = set()
        self.atexit_registered = False
        self.original_raise_signal: Callable[[int], None] | None = None
        #: The timer of ``gc_freeze``'s second freeze (see :func:`freeze_heap`).
        self.freeze_timer: threading.Timer | None = None


_state = _State()


def _run_flush(timeout: float) -> None:
    """Flush in a helper thread and wait at most ``timeout``: never hang a dying process."""
    flush = _state.flush
    if flush is None:
        return

    def target() -> None:
        try:
            flush(timeout)
        except Exception as exc:
            _internal.report("lifecycle.flush", exc)

    worker = threading.Thread(target=target, name="otelfin-exit-flush", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)


def _handle(signum: int, frame: FrameType | None) -> None:
    """Stands in for ``SIG_DFL``: flush, then let the signal do what the default does."""
    _run_flush(FLUSH_TIMEOUT_S)
    with _state.lock:
        _state.ours.discard(signum)
    signal.signal(signum, signal.SIG_DFL)
    raise_signal = _state.original_raise_signal or signal.raise_signal
    raise_signal(signum)


def _raise_signal(signum: int) -> None:
    """``signal.raise_signal`` that flushes first when the signal is about to kill us."""
    original = _state.original_raise_signal
    assert original is not None
    try:
        if (
            _state.flush is not None
            and signum in _SIGNALS
            and signal.getsignal(signum) == signal.SIG_DFL
        ):
            _run_flush(FLUSH_TIMEOUT_S)
    except Exception as exc:
        _internal.report("lifecycle.raise_signal", exc)
    original(signum)


def _at_exit() -> None:
    if _state.flush is not None:
        _run_flush(FLUSH_TIMEOUT_S)


def install(flush: Callable[[float], object], *, handle_signals: bool = True) -> None:
    """Flush with ``flush(timeout_seconds)`` when the process ends. Idempotent."""
    with _state.lock:
        _state.flush = flush
        if not _state.atexit_registered:
            atexit.register(_at_exit)
            _state.atexit_registered = True
    if not handle_signals or threading.current_thread() is not threading.main_thread():
        return
    with _state.lock:
        if _state.original_raise_signal is None and hasattr(signal, "raise_signal"):
            _state.original_raise_signal = signal.raise_signal
            signal.raise_signal = _raise_signal
        for signum in _SIGNALS:
            try:
                current: Any = signal.getsignal(signum)
                # Only the default disposition is taken over: SIG_IGN, a handler set from C
                # (None) or any Python handler (SIGINT's default_int_handler included, which
                # ends in a normal exit and so in atexit) is the host's decision.
                if current == signal.SIG_DFL:
                    signal.signal(signum, _handle)
                    _state.ours.add(signum)
            except (ValueError, OSError) as exc:  # an embedded interpreter, an odd platform
                _internal.report("lifecycle.install", exc)


#: ``gc_freeze``: the second freeze comes this long after ``configure()``, once the application
#: has built what it keeps (routes, models, pools) and served its first requests.
FREEZE_DELAY_S = 5.0


def _freeze(collect: bool) -> None:
    import gc

    try:
        if collect:
            gc.collect()  # what is garbage now must not become immortal
        gc.freeze()
    except Exception as exc:  # pragma: no cover - gc.freeze cannot fail on CPython
        _internal.report("lifecycle.gc_freeze", exc)


def freeze_heap(delay_s: float = FREEZE_DELAY_S) -> None:
    """Move the objects start-up made out of the cyclic collector's reach (``gc.freeze()``):
    once now, and once more ``delay_s`` later (after a full collection), in a daemon thread.

    A generation-2 collection walks every tracked object; a service that imported a web
    framework, the SDK and its own code has hundreds of thousands, so each one pauses every
    thread for milliseconds, which lands in the latency tail. Frozen objects are never
    walked (nor freed: start-up objects live for the whole process anyway). Opt-in
    (``gc_freeze``): an application that builds and drops big object graphs after start-up
    gains less.
    """
    _freeze(collect=False)
    with _state.lock:
        if _state.freeze_timer is not None:
            _state.freeze_timer.cancel()
        timer = _new_timer(delay_s)
        _state.freeze_timer = timer
    timer.start()


def _new_timer(delay_s: float) -> threading.Timer:
    """The daemon timer thread that runs the second, collected freeze."""
    timer = threading.Timer(delay_s, _freeze, kwargs={"collect": True})
    timer.daemon = True
    timer.name = "otelfin-gc-freeze"
    return timer


def uninstall() -> None:
    """Put ``SIG_DFL`` back where otelfin's handler still stands; stop flushing."""
    with _state.lock:
        _state.flush = None
        ours = set(_state.ours)
        _state.ours.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in ours:
        try:
            if signal.getsignal(signum) is _handle:
                signal.signal(signum, signal.SIG_DFL)
        except (ValueError, OSError) as exc:
            _internal.report("lifecycle.uninstall", exc)

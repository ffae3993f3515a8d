"""Start-up's import burst without a full collection over the host's heap.

``configure()`` imports about 200 modules into a process that has usually imported its web
framework already (FastAPI: ~45,000 objects the cyclic collector tracks). The burst's
allocations make the collector run, and it usually reaches generation 2 during the burst: a
full collection that walks every object the host made before otelfin, ~20 ms of the ~105 ms
of CPU ``configure()`` took in a FastAPI service.

:func:`import_burst` moves the objects that exist when it starts to the permanent generation
(``gc.freeze()``) and back into the oldest generation when it ends (``gc.unfreeze()``), so the
collections the burst sets off walk only what the burst made. Nothing is skipped: the host's
garbage, if any, is collected by the next full collection, which the collector's counters
schedule as before, so the saving stays a saving after ``configure()`` returns: under
callgrind, ``configure()`` in a FastAPI service went from 486M to 467M instructions, and
``configure()`` with the service's next 150,000 objects from 1,038M to 1,013M (the walk is
memory-bound, so the time saved is larger than the instruction count suggests). Switching the
collector off for the burst (``gc.disable()``) was measured too and dropped: it only moved
the collection to the service's next allocations, which then made one full collection more.

It stands aside when the host's own choice could be changed: the collector is off, or objects
are frozen already (the host's ``gc.freeze()``, or ``gc_freeze``): then for the rest of the
process, since telling costs a walk of the frozen objects (``gc.get_freeze_count()``, ~8 ms
for 58,000 objects; free while none are frozen). Limits: a ``gc.freeze()`` another thread
makes while the burst runs is undone with ours (its objects go back to the oldest generation;
nothing is freed); a child forked during the burst unfreezes at once.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["import_burst"]


class _State:
    __slots__ = ("depth", "forks", "frozen", "host_froze", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Bursts under way (the lazy import of ``otelfin._config`` in one thread and a
        #: configure() in another); the outermost one freezes and unfreezes.
        self.depth = 0
        #: Whether the burst under way froze the heap.
        self.frozen = False
        #: Forks into this process: a burst begun before the fork leaves the state alone.
        self.forks = 0
        #: Objects were found frozen once: stand aside from then on, without looking again.
        self.host_froze = False


_state = _State()


@contextmanager
def import_burst() -> Iterator[None]:
    """Run the ``with`` body with the objects made before it out of the collector's reach;
    put back on the way out, exceptions included."""
    with _state.lock:
        forks = _state.forks
        _state.depth += 1
        if _state.depth == 1 and not _state.host_froze and gc.isenabled():
            # get_freeze_count() walks the permanent generation (~1 ms per 7,000 objects): O(1)
            # while it is empty, and walked at most once in a process where it is not.
            if gc.get_freeze_count() == 0:
                gc.freeze()
                _state.frozen = True
            else:
                _state.host_froze = True
    try:
        yield
    finally:
        with _state.lock:
            if forks == _state.forks:
                _state.depth -= 1
            if _state.depth == 0 and _state.frozen:
                _state.frozen = False
                gc.unfreeze()


def _after_fork_in_child() -> None:
    # The thread running the burst does not exist in the child: it would never unfreeze.
    _state.lock = threading.Lock()
    _state.forks += 1
    _state.depth = 0
    if _state.frozen:
        _state.frozen = False
        gc.unfreeze()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""gc_freeze (opt-in): start-up objects are frozen out of the collector's reach."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

import otelfin
from otelfin import _lifecycle


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    gc.unfreeze()
    yield
    if _lifecycle._state.freeze_timer is not None:
        _lifecycle._state.freeze_timer.cancel()
    gc.unfreeze()


def test_default_leaves_the_collector_alone() -> None:
    """Without the setting configure() freezes nothing."""
    otelfin.configure("svc", traces_exporter="none")
    assert gc.get_freeze_count() == 0


def test_gc_freeze_freezes_now_and_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTELFIN_GC_FREEZE=1: objects are frozen at configure(), and a daemon timer set for
    FREEZE_DELAY_S later runs a second, collected freeze that also takes objects made since."""
    made: list[threading.Timer] = []

    def new_timer(delay_s: float) -> threading.Timer:
        timer = real_new_timer(delay_s)
        timer.start = lambda: None  # type: ignore[method-assign]  # fired by hand below
        made.append(timer)
        return timer

    real_new_timer = _lifecycle._new_timer
    monkeypatch.setenv("OTELFIN_GC_FREEZE", "1")
    monkeypatch.setattr(_lifecycle, "_new_timer", new_timer)
    otelfin.configure("svc", traces_exporter="none")
    first = gc.get_freeze_count()
    assert first > 0
    (timer,) = made
    assert timer.interval == _lifecycle.FREEZE_DELAY_S and timer.daemon
    kept = [[i] for i in range(5000)]  # made after configure(), still alive
    timer.run()  # what the timer thread runs (no race with a loaded machine)
    assert gc.get_freeze_count() >= first + len(kept)

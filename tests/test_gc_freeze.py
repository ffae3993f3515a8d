"""gc_freeze (opt-in): start-up objects are frozen out of the collector's reach."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import otelfin
from otelfin import _lifecycle


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    gc.unfreeze()
    yield
    if _lifecycle._freeze_timer is not None:
        _lifecycle._freeze_timer.cancel()
    gc.unfreeze()


def test_default_leaves_the_collector_alone() -> None:
    """Without the setting configure() freezes nothing."""
    otelfin.configure("svc", traces_exporter="none")
    assert gc.get_freeze_count() == 0


def test_gc_freeze_freezes_now_and_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTELFIN_GC_FREEZE=1: objects are frozen at configure(), and a second, collected freeze
    follows in a daemon thread (here after 10 ms) that also takes objects made since."""
    monkeypatch.setenv("OTELFIN_GC_FREEZE", "1")
    monkeypatch.setattr(_lifecycle, "FREEZE_DELAY_S", 0.01)
    monkeypatch.setattr(_lifecycle.freeze_heap, "__defaults__", (0.01,))
    otelfin.configure("svc", traces_exporter="none")
    first = gc.get_freeze_count()
    assert first > 0
    kept = [[i] for i in range(5000)]  # made after configure(), still alive
    timer = _lifecycle._freeze_timer
    assert timer is not None and timer.daemon
    timer.join(5)
    assert gc.get_freeze_count() >= first + len(kept)

"""configure()'s import burst runs with the host's objects frozen, and leaves the collector as
it found it (see otelfin._burst)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import otelfin
from otelfin import _burst, _config


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    _burst._state.host_froze = False
    was = gc.isenabled()
    yield
    gc.unfreeze()
    _burst._state.host_froze = False
    if was:
        gc.enable()


def _freeze_counts_during_pillars(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record gc.get_freeze_count() while configure() installs the pillars."""
    seen: list[int] = []
    real = _config._setup_pillars

    def setup_pillars(*args: Any, **kwargs: Any) -> bool:
        seen.append(gc.get_freeze_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(_config, "_setup_pillars", setup_pillars)
    return seen


def test_pillars_are_installed_with_earlier_objects_frozen_then_unfrozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """During the burst the objects made before it are frozen; after it none are."""
    seen = _freeze_counts_during_pillars(monkeypatch)
    otelfin.configure("svc", traces_exporter="none")
    assert seen and seen[0] > 1000
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


def test_a_failing_configure_unfreezes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration error raised inside the burst still puts every object back."""
    seen = _freeze_counts_during_pillars(monkeypatch)
    with pytest.raises(ValueError):
        otelfin.configure("svc", traces_exporter="none", metrics_labels=("card_number",))
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0


def test_the_hosts_freeze_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects the host froze stay frozen, and the burst freezes nothing more."""
    seen = _freeze_counts_during_pillars(monkeypatch)
    gc.freeze()
    frozen = gc.get_freeze_count()
    kept = [[i] for i in range(2000)]  # made after the host's freeze
    otelfin.configure("svc", traces_exporter="none")
    # Frozen objects that die leave the count; the 2,000 kept would join it if frozen.
    assert len(seen) == 1 and frozen - 100 < seen[0] <= frozen
    assert frozen - 100 < gc.get_freeze_count() <= frozen
    assert len(kept) == 2000


def test_after_seeing_a_hosts_freeze_it_stands_aside_without_looking_again() -> None:
    """Telling whether objects are frozen walks them: done once, then the burst stands aside
    (also once the host unfroze)."""
    gc.freeze()
    with _burst.import_burst():
        pass
    gc.unfreeze()
    with _burst.import_burst():
        assert gc.get_freeze_count() == 0
    assert _burst._state.host_froze


def test_a_disabled_collector_stays_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the collector off, the burst neither freezes nor switches it on."""
    seen = _freeze_counts_during_pillars(monkeypatch)
    gc.disable()
    otelfin.configure("svc", traces_exporter="none")
    assert seen == [0]
    assert not gc.isenabled()


def test_nested_bursts_unfreeze_once_at_the_outermost() -> None:
    """An inner burst ending does not unfreeze what the outer one still covers."""
    with _burst.import_burst():
        frozen = gc.get_freeze_count()
        with _burst.import_burst():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen > 0
    assert gc.get_freeze_count() == 0


def test_a_child_forked_during_the_burst_unfreezes() -> None:
    """The fork hook unfreezes in a child whose burst thread did not survive the fork."""
    with _burst.import_burst():
        assert gc.get_freeze_count() > 0
        _burst._after_fork_in_child()  # what os.fork runs in the child
        assert gc.get_freeze_count() == 0
        assert _burst._state.depth == 0
    assert gc.get_freeze_count() == 0
    assert _burst._state.depth == 0


def test_the_lazy_import_of_configure_runs_in_a_burst() -> None:
    """``otelfin.configure`` imports otelfin._config (the SDK and more) with earlier objects
    frozen, and nothing is frozen afterwards (a fresh interpreter)."""
    code = textwrap.dedent(
        """
        import gc, sys
        seen = []

        class Spy:
            def find_spec(self, name, path=None, target=None):
                if name == "otelfin._config":
                    seen.append(gc.get_freeze_count())
                return None

        sys.meta_path.insert(0, Spy())
        import otelfin
        otelfin.configure  # the lazy attribute: imports otelfin._config
        print(seen[0] > 0, gc.get_freeze_count(), gc.isenabled())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "0", "True"]

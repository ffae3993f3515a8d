"""otelfin's own collectors, one per registry: made on first use, found again, forgotten.

A pillar that counts something about itself (series folded by the cap, unregistered error
codes) keeps one collector per ``CollectorRegistry`` the service handed over. They are held
by weak reference to the registry: a registry that is garbage-collected drops out with its
collectors, and a new registry is a new key even at a reused address (``id()`` keys got that
wrong once). Nothing here reads a registry's private parts: a name already taken in a
registry is the caller's to handle (``prometheus_client`` raises ``ValueError``).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

__all__ = ["collector_in", "forget"]

C = TypeVar("C", bound=Collector)

_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Collector]] = (
    weakref.WeakKeyDictionary()
)
#: Collectors made with ``registry=None`` (counting without exposing), one per name.
_unregistered: dict[str, Collector] = {}


def collector_in(
    registry: CollectorRegistry | None, name: str, make: Callable[[CollectorRegistry | None], C]
) -> C:
    """The collector called ``name`` otelfin keeps in ``registry``, made by ``make(registry)``
    the first time (``make`` registers it; if it raises, nothing is kept)."""
    with _lock:
        held = _unregistered if registry is None else _by_registry.setdefault(registry, {})
        found = held.get(name)
        if found is None:
            found = held[name] = make(registry)
        return found  # type: ignore[return-value]  # made by this name's own factory


def forget(registry: CollectorRegistry | None, name: str) -> None:
    """Drop the collector kept under ``name`` and unregister it from ``registry``."""
    with _lock:
        held = _unregistered if registry is None else _by_registry.get(registry, {})
        found = held.pop(name, None)
    if found is not None and registry is not None:
        with contextlib.suppress(KeyError):
            registry.unregister(found)

"""The seam between ``configure()`` and the pillars.

``otelfin.configure()`` calls each pillar's ``install_pillar(config, tracing)`` with the
effective :class:`~otelfin.Config` and what it knows about tracing (:class:`Tracing`); the
pillar applies the settings to itself and returns what must be added to the tracer provider
(:class:`Installed`). Config adds those processors once per provider and tracks that by
weak reference, so no pillar reaches into config's state and nobody remembers objects by
``id()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

__all__ = ["Installed", "Tracing"]


@dataclass(frozen=True)
class Tracing:
    """The tracer provider otelfin uses, and whether otelfin created it."""

    provider: TracerProvider | None
    owns_provider: bool


@dataclass(frozen=True)
class Installed:
    """What a pillar asks config to add to the tracer provider (once per provider)."""

    span_processors: tuple[SpanProcessor, ...] = ()

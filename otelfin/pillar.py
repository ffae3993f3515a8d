"""The seam between ``configure()`` and the pillars: :class:`Config`, :class:`Tracing`,
:class:`Installed`.

``otelfin.configure()`` calls each pillar's ``install_pillar(config, tracing)`` with the
effective :class:`Config` and what it knows about tracing (:class:`Tracing`); the pillar
applies the settings to itself and returns what must be added to the tracer provider
(:class:`Installed`). This module sits on the bottom floor: the pillars import these types
from here, never from the package face or from config's private module. Config adds those
processors once per provider and tracks that by weak reference, so no pillar reaches into
config's state and nobody remembers objects by ``id()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from otelfin.catalogue import Catalogue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

__all__ = ["Config", "ErrorCodePolicy", "Installed", "Tracing"]

ErrorCodePolicy = Literal["drop", "tag", "raise"]

#: Settings that are fields of Config; every other row of the table lands in Config.options.
FIELDS = (
    "service_name",
    "error_code_policy",
    "metrics_port",
    "methods_include",
    "traces_exporter",
    "spans_file",
    "span_processor",
    "propagators",
    "pan_mask",
    "log_level",
    "log_file",
    "enrich_logs",
)


@dataclass(frozen=True)
class Config:
    """The effective settings after ``configure()`` (environment applied)."""

    service_name: str
    catalogue: Catalogue
    catalogue_paths: tuple[str, ...] = ()
    error_code_policy: ErrorCodePolicy = "tag"
    metrics_port: int | None = None
    methods_include: tuple[str, ...] = ()
    traces_exporter: str = "none"
    spans_file: str | None = None
    span_processor: Literal["batch", "simple"] = "batch"
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    pan_mask: Literal["last4", "first6last4"] = "last4"
    log_level: str = "info"
    log_file: str | None = None
    enrich_logs: bool = False
    #: Every other setting of the table (pillar options), resolved, defaults included.
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tracing:
    """The tracer provider otelfin uses, and whether otelfin created it."""

    provider: TracerProvider | None
    owns_provider: bool
    #: What ``@traced`` calls report to: the recorder the metrics pillar built (an
    #: :class:`otelfin.instrument.CallObserver`), handed by config to the tracing pillar.
    call_observer: Any = None


@dataclass(frozen=True)
class Installed:
    """What a pillar asks config to add to the tracer provider (once per provider)."""

    span_processors: tuple[SpanProcessor, ...] = ()
    #: A call observer for ``@traced`` (the metrics pillar's recorder), passed on by config to
    #: the pillars installed after this one in :attr:`Tracing.call_observer`.
    call_observer: Any = None

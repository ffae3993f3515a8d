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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from otelfin._settings import default
from otelfin.catalogue import Catalogue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

__all__ = ["Config", "ErrorCodePolicy", "Installed", "Tracing"]

#: The type of the ``error_code_policy`` row's choices (a type cannot be built from them).
ErrorCodePolicy = Literal["drop", "tag", "raise"]


@dataclass(frozen=True)
class Config:
    """The effective settings after ``configure()`` (environment applied).

    Each field is the row of the settings table (:mod:`otelfin._settings`) of the same name,
    with that row's default; every other row is in :attr:`options`.
    """

    service_name: str
    catalogue: Catalogue
    error_code_policy: ErrorCodePolicy = default("error_code_policy")
    metrics_port: int | None = default("metrics_port")
    methods_include: tuple[str, ...] = default("methods_include")
    #: Resolved by configure() (a span_exporter, the variables, spans_file): never None.
    traces_exporter: str = "none"
    spans_file: str | None = default("spans_file")
    span_processor: Literal["batch", "simple"] = default("span_processor")
    propagators: tuple[str, ...] = default("propagators")
    pan_mask: Literal["last4", "first6last4"] = default("pan_mask")
    log_level: str = default("log_level")
    log_file: str | None = default("log_file")
    enrich_logs: bool = default("enrich_logs")
    #: Every other setting of the table (pillar options), resolved, defaults included.
    options: Mapping[str, Any] = field(default_factory=dict)


#: The rows that are fields of :class:`Config` (``catalogue`` is loaded from its row apart).
FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in ("catalogue", "options"))


@dataclass(frozen=True)
class Tracing:
    """The tracer provider otelfin uses, and whether otelfin created it."""

    provider: TracerProvider | None
    owns_provider: bool
    #: What ``@traced`` calls report to: the recorder the metrics pillar built (an
    #: :class:`otelfin.instrument.CallObserver`), handed by config to the tracing pillar.
    call_observer: Any = None
    #: The :class:`otelfin.scrub.ScrubOptions` the scrub pillar built from the settings,
    #: handed by config to the pillars after it, whose scrubbing components keep them. None
    #: (the scrub pillar failed): they follow the process default, masking on.
    scrub_options: Any = None


@dataclass(frozen=True)
class Installed:
    """What a pillar asks config to add to the tracer provider (once per provider)."""

    span_processors: tuple[SpanProcessor, ...] = ()
    #: A call observer for ``@traced`` (the metrics pillar's recorder), passed on by config to
    #: the pillars installed after this one in :attr:`Tracing.call_observer`.
    call_observer: Any = None
    #: The scrubber's options (the scrub pillar's), passed on in :attr:`Tracing.scrub_options`.
    scrub_options: Any = None

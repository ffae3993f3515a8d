"""Propagation: one trace across HTTP, gRPC, RabbitMQ, Kafka and NATS.

``otelfin.configure()`` installs :class:`OtelfinPropagator` as OpenTelemetry's global text-map
propagator, so ``opentelemetry.propagate.inject/extract`` and every instrumentation use it.
The carrier adapters read and write each transport's headers case-insensitively::

    from otelfin.propagation import extract, inject, kafka_headers_getter, kafka_headers_setter

    headers: list[tuple[str, bytes]] = []
    inject(headers, kafka_headers_setter)         # traceparent, tracestate, baggage
    ctx = extract(record.headers, kafka_headers_getter)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator

from otelfin.propagation import _carriers
from otelfin.propagation._carriers import *  # noqa: F403  (the adapters, named once in _carriers.__all__)
from otelfin.propagation._carriers import headers_getter, headers_setter
from otelfin.propagation._propagator import INJECT_FORMATS, OtelfinPropagator

if TYPE_CHECKING:
    from otelfin.pillar import Config, Tracing

__all__ = ["OtelfinPropagator", "INJECT_FORMATS", "extract", "inject"]
__all__ += _carriers.__all__


def extract(
    carrier: Any,
    getter: Getter[Any] = headers_getter,
    *,
    context: Context | None = None,
    propagator: TextMapPropagator | None = None,
) -> Context:
    """The context a carrier continues (``propagator`` defaults to the global one)."""
    return (propagator or propagate.get_global_textmap()).extract(carrier, context, getter)


def inject(
    carrier: Any,
    setter: Setter[Any] = headers_setter,
    *,
    context: Context | None = None,
    propagator: TextMapPropagator | None = None,
) -> None:
    """Write the current (or given) context into ``carrier``."""
    (propagator or propagate.get_global_textmap()).inject(carrier, context, setter)


class _State:
    __slots__ = ("installed", "previous")

    def __init__(self) -> None:
        self.previous: TextMapPropagator | None = None
        self.installed: OtelfinPropagator | None = None


_state = _State()


def install_pillar(config: Config, tracing: Tracing) -> None:
    """Set the global propagator from ``config.propagators`` (called by ``configure``); it
    masks baggage with the scrub pillar's options ``configure()`` handed over."""
    current = propagate.get_global_textmap()
    installed = _state.installed
    wanted = tuple(p.strip().lower() for p in config.propagators if p.strip())
    options = tracing.scrub_options  # the scrub pillar's, for baggage
    if installed is not None and current is installed and installed.formats == wanted:
        if installed.scrub_options is not options:
            installed.use_scrub_options(options)
        return
    # ValueError for unknown formats
    propagator = OtelfinPropagator(config.propagators, scrub_options=options)
    if installed is None or current is not installed:
        _state.previous = current
    _state.installed = propagator
    propagate.set_global_textmap(propagator)


def uninstall_pillar() -> None:
    """Put back the propagator that was global before ``configure``."""
    installed = _state.installed
    if installed is not None and propagate.get_global_textmap() is installed and _state.previous:
        propagate.set_global_textmap(_state.previous)
    _state.installed = None
    _state.previous = None

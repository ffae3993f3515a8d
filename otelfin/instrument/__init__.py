"""Tracing: ``@traced``, method include lists and transport instrumentors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otelfin.instrument._include import (
    IncludeEntry,
    MethodIncludeInstrumentor,
    applied,
    instrument_methods,
    parse_entries,
    uninstrument,
)
from otelfin.instrument._traced import CallObserver, TracedSpec, set_call_observer, spec_of, traced

if TYPE_CHECKING:
    from otelfin._config import Config

__all__ = [
    "traced",
    "instrument_methods",
    "uninstrument",
    "applied",
    "parse_entries",
    "IncludeEntry",
    "MethodIncludeInstrumentor",
    "CallObserver",
    "TracedSpec",
    "set_call_observer",
    "spec_of",
]


def _install(config: Config) -> None:
    """Apply the configured include list (called by ``otelfin.configure``)."""
    uninstrument()
    if config.methods_include:
        instrument_methods(parse_entries(config.methods_include))


def _uninstall() -> None:
    uninstrument()

"""Tracing: ``@traced``, method include lists and transport instrumentors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from otelfin import _internal
from otelfin._outcome import OutcomeSpanProcessor
from otelfin.instrument import _traced
from otelfin.instrument._traced import (
    CallHook,
    CallObserver,
    TracedSpec,
    call_observer,
    is_entry,
    live_catalogue,
    set_call_observer,
    spec_of,
    traced,
    use_catalogue,
)
from otelfin.pillar import Installed

if TYPE_CHECKING:
    from otelfin.instrument._include import (
        IncludeEntry,
        MethodIncludeInstrumentor,
        applied,
        instrument_methods,
        parse_entries,
        uninstrument,
    )
    from otelfin.instrument._problem import ProblemDetailsMiddleware, problem, problem_details
    from otelfin.pillar import Config, Tracing

__all__ = [
    "traced",
    "instrument_methods",
    "uninstrument",
    "applied",
    "parse_entries",
    "IncludeEntry",
    "MethodIncludeInstrumentor",
    "CallObserver",
    "CallHook",
    "TracedSpec",
    "call_observer",
    "is_entry",
    "set_call_observer",
    "spec_of",
    "problem_details",
    "problem",
    "ProblemDetailsMiddleware",
]


# Method include lists (wrapt, post-import hooks, the contrib instrumentor base) and problem
# details load on first use: ``@traced`` alone needs neither.
_LAZY = {
    "IncludeEntry": "_include",
    "MethodIncludeInstrumentor": "_include",
    "applied": "_include",
    "instrument_methods": "_include",
    "parse_entries": "_include",
    "uninstrument": "_include",
    "ProblemDetailsMiddleware": "_problem",
    "problem": "_problem",
    "problem_details": "_problem",
}


def __getattr__(name: str) -> Any:
    # ``otelfin.instrument.transports`` after a plain ``import otelfin``, imported on first use.
    if name == "transports":
        import importlib

        return importlib.import_module(f"{__name__}.transports")
    return _internal.lazy_attribute(__name__, _LAZY, globals(), name)


class _State:
    """What the tracing pillar installed and must take back."""

    __slots__ = ("given_observer", "outcomes", "threading_by_us")

    def __init__(self) -> None:
        #: One processor for every configure(): config adds it once per provider.
        self.outcomes = OutcomeSpanProcessor(live_catalogue)
        #: The observer configure() handed over (one the application set itself stays).
        self.given_observer: CallObserver | None = None
        self.threading_by_us = False


_state = _State()


def install_pillar(config: Config, tracing: Tracing) -> Installed:
    """Apply the include list, threading and transports (called by ``otelfin.configure``).

    Returns the processor that puts ``otelfin.outcome`` on the transports' spans.
    """
    use_catalogue(config.catalogue)
    _traced.use_scrub_options(tracing.scrub_options)
    # The metrics pillar's recorder, passed on by configure(): @traced calls report to it.
    set_call_observer(tracing.call_observer)
    _state.given_observer = tracing.call_observer
    _uninstrument_methods()
    if config.methods_include:
        from otelfin.instrument._include import instrument_methods, parse_entries_reporting

        instrument_methods(parse_entries_reporting(config.methods_include))
    _install_threading()
    from otelfin.instrument import transports
    from otelfin.instrument.transports import _datastores

    _datastores.set_record_parameters(config.options["db_record_parameters"])
    # configure(transports=False) switches transport instrumentation off; a list picks some.
    wanted = config.options["transports"]  # True, False or a tuple of names
    if wanted is False:
        transports.uninstall()
    else:
        transports.install(None if wanted is True else wanted)
    return Installed(span_processors=(_state.outcomes,))


def _uninstrument_methods() -> None:
    """Undo the include list, if one was ever applied in this process.

    The include-list module (its dataclasses, wrapt's post-import machinery) loads only when
    an include list is given or something imported it (``opentelemetry-instrument``'s entry
    point, the application): until then nothing can have been wrapped, so there is nothing to
    undo and ``configure()`` does not pay for loading it.
    """
    # (A module another thread is still importing has wrapped nothing yet either.)
    undo = getattr(sys.modules.get(f"{__name__}._include"), "uninstrument", None)
    if undo is not None:
        undo()


def _install_threading() -> None:
    """Carry the current context into threads and ThreadPoolExecutor tasks.

    Uses the official opentelemetry-instrumentation-threading; left alone if the application
    (or ``opentelemetry-instrument``) already instrumented threading.
    """
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    instrumentor = ThreadingInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
        _state.threading_by_us = True


def uninstall_pillar() -> None:
    """Undo :func:`install_pillar` (called by ``otelfin.shutdown``)."""
    use_catalogue(None)
    _traced.use_scrub_options(None)
    if _state.given_observer is not None and call_observer() is _state.given_observer:
        set_call_observer(None)  # an observer the application set itself stays
    _state.given_observer = None
    _uninstrument_methods()
    if _state.threading_by_us:
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor

        ThreadingInstrumentor().uninstrument()
        _state.threading_by_us = False
    from otelfin.instrument import transports

    transports.uninstall()

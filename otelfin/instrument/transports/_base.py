"""Shared plumbing for transport modules: switch an official instrumentor on and off once."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from otelfin import _internal

__all__ = ["OfficialInstrumentor", "available"]


def available(*modules: str) -> bool:
    """True when every module can be imported (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except (ImportError, ValueError):
        return False


class OfficialInstrumentor:
    """An official ``opentelemetry-instrumentation-*`` instrumentor, switched on by otelfin.

    It remembers whether otelfin switched it on, so ``uninstall`` never undoes an
    instrumentation the application (or ``opentelemetry-instrument``) set up itself.
    """

    def __init__(self, module: str, cls: str, library: str, extra: str) -> None:
        self.module, self.cls, self.library, self.extra = module, cls, library, extra
        self._ours: Any = None

    def load(self) -> Any:
        """The instrumentor singleton; ImportError names the extra to install."""
        try:
            return getattr(importlib.import_module(self.module), self.cls)()
        except ImportError as exc:
            raise ImportError(
                f"otelfin needs {self.module} for {self.library}: "
                f"pip install 'otelfin[{self.extra}]'"
            ) from exc

    def install(self, **kwargs: Any) -> bool:
        """Instrument unless already instrumented; True when otelfin did it now or before."""
        if self._ours is not None:
            return True
        if not available(self.library, self.module):
            return False
        try:
            instrumentor = self.load()
            if instrumentor.is_instrumented_by_opentelemetry:
                return False
            instrumentor.instrument(**kwargs)
        except Exception as exc:
            _internal.report(f"transports.install[{self.library}]", exc)
            return False
        self._ours = instrumentor
        return True

    def uninstall(self) -> None:
        """Undo ``install`` (only if otelfin instrumented)."""
        instrumentor, self._ours = self._ours, None
        if instrumentor is None:
            return
        try:
            instrumentor.uninstrument()
        except Exception as exc:
            _internal.report(f"transports.uninstall[{self.library}]", exc)


# --- a process span for pull-style consumers ----------------------------------------------------
# Iterators (aio-pika's queue.iterator(), kafka-python's ``for record in consumer``) hand a
# message to code that runs after the library call returns, so no wrapper can enclose the work.
# The span for one message is therefore opened when the iterator returns it, made current in the
# consumer's own thread or task, and closed when the next message is asked for or the iterator
# closes. ``owner`` identifies that thread or task: the context is only detached where it was
# attached (contextvars refuses anything else), the span is ended in any case.

_PROCESS = "_otelfin_process_scope"


def open_process_span(
    holder: Any,
    parent: Any,
    name: str,
    attributes: dict[str, Any],
    owner: object,
    scope: str,
) -> None:
    """Start a CONSUMER span under ``parent`` and make it current; stored on ``holder``."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    span = trace.get_tracer(scope).start_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    holder.__dict__[_PROCESS] = (span, token, owner)


def close_process_span(holder: Any, owner: object) -> None:
    """End the span :func:`open_process_span` stored on ``holder``, if any."""
    from opentelemetry import context as otel_context

    state = holder.__dict__.pop(_PROCESS, None)
    if state is None:
        return
    span, token, opened_by = state
    try:
        if opened_by == owner:
            otel_context.detach(token)
    finally:
        span.end()

"""Which span exporter ``traces_exporter`` names, and the OTLP one built from ``OTEL_*``.

The OTLP exporter is built on its first use, not by ``configure()``: importing it (protobuf,
the OTLP encoder, ``requests``/``urllib3``, or gRPC) was most of ``configure()``'s start-up
time (benchmarks/bench_startup.py). :class:`DeferredSpanExporter` builds it on the first
export, which the batch processor makes on its own thread; spans ended before then wait in the
batch queue as they always did, so none is lost. What can be checked without the import (the
protocol, whether the gRPC exporter is installed) still fails ``configure()``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otelfin import _otlp
from otelfin._exporters._fork import late_import
from otelfin._exporters._jsonl import JsonlSpanExporter

__all__ = ["DeferredSpanExporter", "OTLPSpanExporterFactory", "make_exporter", "otlp_protocol"]


def otlp_protocol() -> str:
    """The OTLP protocol for spans, by the rule every signal shares (:func:`_otlp.protocol`)."""
    return _otlp.protocol("traces")


class OTLPSpanExporterFactory:
    """Builds the OTLP exporter ``traces_exporter="otlp"`` uses (settings from ``OTEL_*``):
    OTLP/HTTP, or OTLP/gRPC when the protocol variables ask for it. Called again in a forked
    child, which must not share the parent's connection."""

    def check(self) -> None:
        """Raise the configuration errors building would raise, without importing the exporter:
        an unsupported protocol, or gRPC asked for and its exporter not installed."""
        if otlp_protocol() != "grpc":
            return
        for module in ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"):
            try:
                found = importlib.util.find_spec(module) is not None
            except ImportError as exc:
                raise _otlp.grpc_missing("traces", exc) from None
            if not found:
                raise _otlp.grpc_missing(
                    "traces", ModuleNotFoundError(f"No module named {module!r}")
                )

    def __call__(self) -> SpanExporter:
        if otlp_protocol() == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcSpanExporter,
                )
            except ImportError as exc:
                raise _otlp.grpc_missing("traces", exc) from None
            return GrpcSpanExporter()
        from otelfin._exporters._sliced import SlicedOTLPSpanExporter

        return SlicedOTLPSpanExporter()


def make_exporter(kind: str, spans_file: str | None) -> SpanExporter | None:
    """An exporter by name: ``none``, ``console``, ``jsonl`` or ``otlp``."""
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind == "jsonl":
        return JsonlSpanExporter(spans_file or "otelfin-spans.jsonl")
    if kind == "otlp":
        factory = OTLPSpanExporterFactory()
        factory.check()
        return DeferredSpanExporter(factory)
    raise ValueError(f"unknown traces exporter {kind!r} (expected none, console, jsonl or otlp)")


class DeferredSpanExporter(SpanExporter):
    """An exporter built by ``factory`` on its first export (see the module docstring).

    ``build()`` builds it at once (the simple processor exports on the caller's thread, so its
    exporter is built by ``configure()`` as before). A build that fails fails that export (the
    pipeline counts it and reports the error once) and is tried again at the next one: an
    import can fail for a moment (two threads importing the same modules in opposite order is
    a ``_DeadlockError``). Shut down before its first export, it never builds.
    """

    def __init__(self, factory: Callable[[], SpanExporter]) -> None:
        self.factory = factory
        self._lock = threading.Lock()
        self._exporter: SpanExporter | None = None
        self._shutdown = False

    @property
    def exporter(self) -> SpanExporter | None:
        """The exporter once built, else None."""
        return self._exporter

    @property
    def exporter_name(self) -> str:
        """The built exporter's class name, which reports and counters give."""
        built = self._exporter
        return type(built).__name__ if built is not None else "OTLPSpanExporter (not built)"

    def build(self) -> SpanExporter:
        """The exporter, built now if it was not yet."""
        built = self._get()
        if built is None:
            raise RuntimeError("the exporter was shut down before it was built")
        return built

    def _get(self) -> SpanExporter | None:
        built = self._exporter
        if built is not None:
            return built
        with self._lock:
            if self._exporter is None and not self._shutdown:
                with late_import():  # fork() waits for the exporter's imports to end
                    self._exporter = self.factory()
            return self._exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        built = self._get()
        if built is None:  # shut down before its first export
            return SpanExportResult.FAILURE
        return built.export(spans)

    def shutdown(self) -> None:
        with self._lock:
            self._shutdown = True
            built = self._exporter
        if built is not None:
            built.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        built = self._exporter
        return True if built is None else bool(built.force_flush(timeout_millis))

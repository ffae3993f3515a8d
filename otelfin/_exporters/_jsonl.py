"""The JSONL span exporter: one OTLP/JSON request per line, appended to a file."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import IO

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otelfin._exporters._encoding import otlp_json_request
from otelfin._exporters._fork import _after_fork, _inherited

__all__ = ["JsonlSpanExporter"]


class JsonlSpanExporter(SpanExporter):
    """Writes each export batch as one OTLP/JSON ``{"resourceSpans": [...]}`` line.

    The same line format as the OpenTelemetry Collector's file exporter, so the file can be
    replayed into a collector or read by ``otelfin`` itself. Encoded by the SDK's own OTLP
    encoder; only the id encoding is adapted (see :func:`otlp_json_request`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        _after_fork(self, JsonlSpanExporter._forked)

    def _forked(self) -> None:
        # The export thread may have held the lock, mid-write, when the parent forked: the
        # child starts over with a new lock and its own descriptor (opened at its first
        # export); the inherited one is left untouched, never flushed.
        self._lock = threading.Lock()
        if self._file is not None:
            _inherited.append(self._file)
            self._file = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = orjson.dumps(otlp_json_request(spans)) + b"\n"
        with self._lock:
            if self._file is None:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                # Unbuffered: one write(2) a line on an O_APPEND file, so forked workers
                # appending to the same file never split each other's lines.
                self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            view = memoryview(line)
            while view:
                view = view[self._file.write(view) :]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return True

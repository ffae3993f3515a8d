"""The ``/metrics`` endpoint: prometheus_client's server, multiprocess-aware.

prometheus_client's exposition already negotiates the format: a scraper that sends
``Accept: application/openmetrics-text`` (Prometheus does) gets OpenMetrics, which is the only
format that carries exemplars; anything else gets the classic text format.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from otelfin.metrics._red import is_multiprocess

__all__ = ["MetricsServer", "multiprocess_registry", "start_metrics_server"]


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; :meth:`stop` shuts it down and frees the port."""

    host: str
    port: int
    registry: CollectorRegistry
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5)


def multiprocess_registry(extra: tuple[Any, ...] = ()) -> CollectorRegistry:
    """A registry that aggregates every worker's ``PROMETHEUS_MULTIPROC_DIR`` files.

    Build it per scrape or once in the serving process; ``extra`` collectors (such as the
    derived requests counter) are registered too.
    """
    from prometheus_client import multiprocess

    from otelfin.metrics._collectors import RequestsCollector
    from otelfin.metrics._red import DURATION_METRIC, REQUESTS_METRIC

    registry = CollectorRegistry()
    collector = multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(
        RequestsCollector(
            collector,
            DURATION_METRIC,
            REQUESTS_METRIC.removesuffix("_total"),
            "Instrumented calls (the duration histogram's count).",
        )
    )
    for item in extra:
        registry.register(item)
    return registry


def start_metrics_server(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None
) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread (port 0 picks a free one).

    ``registry`` defaults to the global one, or, under ``PROMETHEUS_MULTIPROC_DIR``, to a
    :func:`multiprocess_registry` that sums every worker.
    """
    if registry is None:
        registry = multiprocess_registry() if is_multiprocess() else REGISTRY
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(
        host=addr, port=int(server.server_port), registry=registry, _server=server, _thread=thread
    )

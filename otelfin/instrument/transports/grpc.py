"""gRPC clients: the target a channel was opened to, on its client spans.

The official client interceptors see the method of a call, never the channel's target, so
their CLIENT spans carried ``rpc.service`` and ``rpc.method`` and nothing saying which server
answered: a P99 report by ``peer`` could not tell two ledgers apart. otelfin wraps the channel
constructors (``grpc.insecure_channel``/``secure_channel`` and their ``grpc.aio`` twins) and
adds one interceptor that puts ``server.address`` (and ``server.port``) from the target on the
call's client span. It must run inside the official interceptor, where that span is current:

* sync channels: this row is switched on *before* the official one, so the official wrapper
  intercepts the channel otelfin's wrapper returned, and its interceptor runs first;
* ``grpc.aio``: the official wrapper puts its interceptors in front of any it is given.

When the official instrumentor was already on (the application switched it on), otelfin's
interceptor ends up outside it on sync channels; it then finds no client span of the call's
method current and does nothing, so a parent span is never mislabelled.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.trace import SpanKind

from otelfin import _internal
from otelfin._peer import host_of
from otelfin.instrument.transports._base import Patch, patch, unpatch

__all__ = ["GrpcTargetInstrumentor", "target_address"]

_SCHEMES = ("dns:", "ipv4:", "ipv6:")


def target_address(target: object) -> tuple[str, int | None]:
    """``(host, port)`` of a gRPC channel target (``host:port``, ``dns:///host:port``, ...).

    A target with no host (``unix:/run/ledger.sock``) is named by what follows the scheme.
    """
    text = target.decode("utf-8", "replace") if isinstance(target, bytes) else str(target)
    for scheme in _SCHEMES:
        if text.startswith(scheme):
            text = text[len(scheme) :].split(",", 1)[0]
            if scheme == "dns:":  # dns:[//authority/]host[:port]: the authority is a resolver
                text = text.rsplit("/", 1)[-1]
            break
    if text.startswith("unix:") or text.startswith("unix-abstract:"):
        return text.split(":", 1)[1].lstrip("/").rsplit("/", 1)[-1] or "unix", None
    host = host_of(text)
    if not host:
        return text[:100], None
    port: int | None = None
    tail = text.rsplit(":", 1)[-1] if ":" in text else ""
    if tail.isdigit() and not text.endswith("]"):
        port = int(tail)
    return host, port


def _stamp(address: tuple[str, int | None], method: object) -> None:
    try:
        span = trace.get_current_span()
        if not span.is_recording() or getattr(span, "kind", None) is not SpanKind.CLIENT:
            return
        name = method.decode() if isinstance(method, bytes) else method
        if getattr(span, "name", None) != name:
            return  # not the call's own span (see the module docstring)
        host, port = address
        span.set_attribute("server.address", host)
        if port is not None:
            span.set_attribute("server.port", port)
    except Exception as exc:
        _internal.report("transports.grpc.target", exc)


_interceptor_classes: dict[str, Any] = {}


def _sync_interceptor(address: tuple[str, int | None]) -> Any:
    cls = _interceptor_classes.get("sync")
    if cls is None:
        import grpc

        # grpcio ships no type stubs: its interceptor bases are Any to mypy.
        class _TargetInterceptor(
            grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
            grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
            grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
            grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
        ):
            def __init__(self, address: tuple[str, int | None]) -> None:
                self.address = address

            def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
                _stamp(self.address, details.method)
                return continuation(details, request)

            def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
                _stamp(self.address, details.method)
                return continuation(details, request)

            def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
                _stamp(self.address, details.method)
                return continuation(details, requests)

            def intercept_stream_stream(
                self, continuation: Any, details: Any, requests: Any
            ) -> Any:
                _stamp(self.address, details.method)
                return continuation(details, requests)

        cls = _interceptor_classes["sync"] = _TargetInterceptor
    return cls(address)


def _aio_interceptors(address: tuple[str, int | None]) -> list[Any]:
    classes = _interceptor_classes.get("aio")
    if classes is None:
        import grpc.aio

        class _Base:
            def __init__(self, address: tuple[str, int | None]) -> None:
                self.address = address

            async def _call(self, continuation: Any, details: Any, request: Any) -> Any:
                _stamp(self.address, details.method)
                return await continuation(details, request)

        class _UnaryUnary(_Base, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
            intercept_unary_unary = _Base._call

        class _UnaryStream(_Base, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
            intercept_unary_stream = _Base._call

        class _StreamUnary(_Base, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
            intercept_stream_unary = _Base._call

        class _StreamStream(_Base, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
            intercept_stream_stream = _Base._call

        classes = _interceptor_classes["aio"] = (
            _UnaryUnary,
            _UnaryStream,
            _StreamUnary,
            _StreamStream,
        )
    return [cls(address) for cls in classes]


def _target(args: Any, kwargs: Any) -> object:
    return args[0] if args else kwargs.get("target", "")


def _sync_channel(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    channel = wrapped(*args, **kwargs)
    try:
        import grpc

        return grpc.intercept_channel(
            channel, _sync_interceptor(target_address(_target(args, kwargs)))
        )
    except Exception as exc:
        _internal.report("transports.grpc.channel", exc)
        return channel


def _aio_channel(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        ours = _aio_interceptors(target_address(_target(args, kwargs)))
        kwargs = dict(kwargs)
        kwargs["interceptors"] = [*(kwargs.get("interceptors") or ()), *ours]
    except Exception as exc:
        _internal.report("transports.grpc.aio_channel", exc)
    return wrapped(*args, **kwargs)


_PATCHES: tuple[Patch, ...] = (
    ("grpc", "insecure_channel", _sync_channel),
    ("grpc", "secure_channel", _sync_channel),
    ("grpc.aio", "insecure_channel", _aio_channel),
    ("grpc.aio", "secure_channel", _aio_channel),
)


class GrpcTargetInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Put the channel target on gRPC client spans (see the module docstring)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The grpcio releases the official instrumentation supports."""
        return ("grpcio >= 1.42.0",)

    def _instrument(self, **kwargs: Any) -> None:
        patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PATCHES)

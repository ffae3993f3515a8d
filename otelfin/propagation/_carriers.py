"""Getter/Setter adapters for every carrier otelfin propagates through.

Each getter is case-insensitive, accepts ``str`` or ``bytes`` values (bytes that are not
UTF-8 are ignored, never decoded with replacement characters and re-emitted), and returns all
values of a repeated header in order. None of them keeps state, so one instance per carrier
kind is shared (the ``*_getter``/``*_setter`` singletons).

Besides the ``Getter`` interface, each getter has ``collect(carrier, names)``: one pass over the
carrier returning the wanted headers (lower-case names), which is what otelfin's propagator
uses instead of one ``get`` per header name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from opentelemetry.propagators.textmap import Getter, Setter

__all__ = [
    "CarrierGetter",
    "HeadersGetter",
    "HeadersSetter",
    "WsgiEnvironGetter",
    "AsgiScopeGetter",
    "GrpcMetadataGetter",
    "GrpcMetadataSetter",
    "KafkaHeadersGetter",
    "KafkaHeadersSetter",
    "AmqpHeadersGetter",
    "AmqpHeadersSetter",
    "NatsHeadersGetter",
    "NatsHeadersSetter",
    "headers_getter",
    "headers_setter",
    "wsgi_environ_getter",
    "asgi_scope_getter",
    "grpc_metadata_getter",
    "grpc_metadata_setter",
    "kafka_headers_getter",
    "kafka_headers_setter",
    "amqp_headers_getter",
    "amqp_headers_setter",
    "nats_headers_getter",
    "nats_headers_setter",
]

Collected = dict[str, list[str]]
_MAX_VALUE = 16384  # a single header value larger than this is ignored as hostile
# Header names repeat across requests: remembering how each raw name classifies saves a
# str.lower() and a set lookup per header per request; bounded so a flood of odd names
# cannot grow it (past the bound names are classified every time).
_KNOWN_MAX = 2048
_known: dict[frozenset[str], dict[Any, str]] = {}


def _known_names(names: frozenset[str]) -> dict[Any, str]:
    known = _known.get(names)
    if known is None:
        known = {}
        if len(_known) < 16:
            _known[names] = known
    return known


def _classify(key: Any, names: frozenset[str], known: dict[Any, str]) -> str:
    lowered = _name(key)
    name = lowered if lowered is not None and lowered in names else ""
    if len(known) < _KNOWN_MAX:
        known[key] = name
    return name


def _text(value: Any) -> str | None:
    """A header value as text, or None for anything that is not (valid UTF-8) text."""
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > _MAX_VALUE:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _add(out: Collected, name: str, value: Any) -> None:
    if isinstance(value, (list, tuple)):
        for item in value:
            _add(out, name, item)
        return
    text = _text(value)
    if text is not None:
        existing = out.get(name)
        if existing is None:
            out[name] = [text]
        else:
            existing.append(text)


def _name(key: Any) -> str | None:
    if isinstance(key, str):
        return key.lower()
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("latin-1").lower()
    return None


class CarrierGetter(Getter[Any]):
    """Base of otelfin's getters: case-insensitive ``get``, ``keys`` and one-pass ``collect``.

    Subclasses only say how to iterate ``(name, value)`` pairs of their carrier.
    """

    #: A plain dict carrier maps header names to values (False for ASGI scopes).
    _dict_is_headers = True

    def pairs(self, carrier: Any) -> Iterable[tuple[Any, Any]]:
        """The carrier's ``(name, value)`` pairs, repeated names included."""
        if carrier is None:
            return ()
        multi_items = getattr(carrier, "multi_items", None)  # httpx.Headers
        if multi_items is not None:
            return multi_items()  # type: ignore[no-any-return]
        items = getattr(carrier, "items", None)  # dict, multidict, email.message.Message
        if items is not None:
            return items()  # type: ignore[no-any-return]
        return carrier  # type: ignore[no-any-return]  # a sequence of pairs

    def collect(self, carrier: Any, names: frozenset[str]) -> Collected:
        """The values of the wanted headers (lower-case ``names``), in carrier order."""
        out: Collected = {}
        if type(carrier) is dict and self._dict_is_headers:
            # The common case, inlined: a plain dict. Each raw header name is classified once
            # (wanted canonical name, or "" for not wanted) and remembered.
            known = _known_names(names)
            for key, value in carrier.items():
                name = known.get(key)
                if name is None:
                    name = _classify(key, names, known)
                if name:
                    if type(value) is str and len(value) <= _MAX_VALUE:
                        found = out.get(name)
                        if found is None:
                            out[name] = [value]
                        else:
                            found.append(value)
                    else:
                        _add(out, name, value)
            return out
        for pair in self.pairs(carrier):
            try:
                key, value = pair
            except (TypeError, ValueError):
                continue
            name = _name(key)
            if name is not None and name in names:
                _add(out, name, value)
        return out

    def get(self, carrier: Any, key: str) -> list[str] | None:
        """All values of header ``key`` (any casing), or None."""
        try:
            return self.collect(carrier, frozenset((key.lower(),))).get(key.lower())
        except Exception:  # a hostile carrier yields nothing, never an error
            return None

    def keys(self, carrier: Any) -> list[str]:
        """The carrier's header names (lower-case)."""
        out: list[str] = []
        try:
            for pair in self.pairs(carrier):
                try:
                    name = _name(pair[0])
                except (TypeError, IndexError, KeyError):
                    continue
                if name is not None:
                    out.append(name)
        except Exception:
            return out
        return out


class HeadersGetter(CarrierGetter):
    """HTTP headers: a dict of any casing, a mapping of lists, ``httpx.Headers``, a multidict,
    ``email.message.Message``/``http.client.HTTPMessage`` or a sequence of pairs."""


headers_getter = HeadersGetter()


class WsgiEnvironGetter(CarrierGetter):
    """A WSGI environ: ``traceparent`` is read from ``HTTP_TRACEPARENT``.

    Servers fold repeated headers into one comma-joined value, which is what the W3C spec
    expects for tracestate and baggage (and makes a repeated traceparent invalid).
    """

    def collect(self, carrier: Any, names: frozenset[str]) -> Collected:
        out: Collected = {}
        if not isinstance(carrier, Mapping):
            return out
        for name in names:
            value = carrier.get("HTTP_" + name.upper().replace("-", "_"))
            if value is not None:
                _add(out, name, value)
        return out

    def pairs(self, carrier: Any) -> Iterable[tuple[Any, Any]]:
        if not isinstance(carrier, Mapping):
            return ()
        return [
            (key[5:].replace("_", "-"), value)
            for key, value in carrier.items()
            if isinstance(key, str) and key.startswith("HTTP_")
        ]


wsgi_environ_getter = WsgiEnvironGetter()


class AsgiScopeGetter(CarrierGetter):
    """An ASGI HTTP/websocket scope: ``scope["headers"]`` is a list of ``(bytes, bytes)``."""

    _dict_is_headers = False

    def pairs(self, carrier: Any) -> Iterable[tuple[Any, Any]]:
        if not isinstance(carrier, Mapping):
            return ()
        return carrier.get("headers") or ()


asgi_scope_getter = AsgiScopeGetter()


class GrpcMetadataGetter(CarrierGetter):
    """gRPC metadata: a sequence of ``(key, value)`` tuples or ``grpc.aio.Metadata``.

    Binary (``-bin``) entries are never read: their values are bytes by definition.
    """

    def pairs(self, carrier: Any) -> Iterable[tuple[Any, Any]]:
        if carrier is None:
            return ()
        if isinstance(carrier, Mapping):
            return carrier.items()
        return carrier  # type: ignore[no-any-return]


grpc_metadata_getter = GrpcMetadataGetter()


class KafkaHeadersGetter(CarrierGetter):
    """Kafka record headers: a list of ``(str, bytes)``; non-UTF-8 values are ignored."""


kafka_headers_getter = KafkaHeadersGetter()


class AmqpHeadersGetter(CarrierGetter):
    """AMQP message headers (pika ``BasicProperties.headers``, aio-pika ``Message.headers``);
    values may be ``str`` or ``bytes``; a missing (None) table is an empty carrier."""


amqp_headers_getter = AmqpHeadersGetter()


class NatsHeadersGetter(CarrierGetter):
    """nats-py message headers (``dict[str, str]``, or None)."""


nats_headers_getter = NatsHeadersGetter()


def _remove_other_spellings(carrier: MutableMapping[Any, Any], key: str) -> None:
    lowered = key.lower()
    for existing in [k for k in carrier if _name(k) == lowered]:  # bytes names too
        if existing != key:
            del carrier[existing]


class HeadersSetter(Setter[Any]):
    """Sets a header in a mutable mapping (or appends to a list of pairs), replacing any
    value under another casing so a carrier never holds two traceparents."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        if isinstance(carrier, MutableMapping):
            if type(carrier) is dict:
                _remove_other_spellings(carrier, key)
            carrier[key] = value
        elif isinstance(carrier, list):
            _set_pair(carrier, key, value)


headers_setter = HeadersSetter()


def _set_pair(carrier: list[Any], key: str, value: Any) -> None:
    lowered = key.lower()
    # Odd entries (an empty tuple, a non-pair) are kept as they are, never an error; a bytes
    # name counts like its text, so a carrier never ends up with two traceparents.
    carrier[:] = [
        pair
        for pair in carrier
        if not (isinstance(pair, tuple) and len(pair) == 2 and _name(pair[0]) == lowered)
    ]
    carrier.append((key, value))


class GrpcMetadataSetter(Setter[Any]):
    """Adds a lower-case key to gRPC metadata: a list of tuples, or ``grpc.aio.Metadata``."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        key = key.lower()
        if isinstance(carrier, list):
            _set_pair(carrier, key, value)
        elif hasattr(carrier, "__setitem__"):
            carrier[key] = value


grpc_metadata_setter = GrpcMetadataSetter()


class KafkaHeadersSetter(Setter[Any]):
    """Sets a header in Kafka headers as ``bytes``, replacing an older value: a list of
    ``(str, bytes)`` (kafka-python, confluent-kafka) or a dict (confluent-kafka accepts both)."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        if isinstance(carrier, list):
            _set_pair(carrier, key, value.encode("utf-8"))
        elif isinstance(carrier, MutableMapping):
            _remove_other_spellings(carrier, key)
            carrier[key] = value.encode("utf-8")


kafka_headers_setter = KafkaHeadersSetter()


class AmqpHeadersSetter(HeadersSetter):
    """Sets a ``str`` header in an AMQP headers table (a dict)."""


amqp_headers_setter = AmqpHeadersSetter()


class NatsHeadersSetter(HeadersSetter):
    """Sets a header in a nats-py headers dict."""


nats_headers_setter = NatsHeadersSetter()

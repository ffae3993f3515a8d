"""The name of the other end of an outgoing call: the ``peer`` of a CLIENT or PRODUCER span.

The official instrumentations describe the remote end with different attributes, and the
ones this release sets by default (the old semantic conventions) rarely include
``server.address``: httpx, requests, urllib3 and aiohttp give only ``http.url``; psycopg,
asyncpg, redis, pika and aio-pika give ``net.peer.name``; kafka-python gives ``messaging.url``
(a JSON list of brokers) and aiokafka a JSON list in ``server.address``; sqlite3 gives only
``db.system``; the gRPC client gives the RPC service and method. :func:`peer_of` reads them all,
in this order, and never returns ``""``:

1. ``server.address``, then ``peer.service`` (a name the application chose);
2. the host of the URL (``url.full``, ``http.url``), never its path, query or credentials;
3. ``net.peer.name``, ``network.peer.address``, ``net.sock.peer.addr``;
4. the first broker of ``messaging.url``;
5. the database: ``db.namespace``, ``db.name`` (the file name of an SQLite path);
6. the remote RPC service (``rpc.service``), then the system (``db.system``,
   ``messaging.system``, ``rpc.system``), then ``unknown``.

:func:`stamp_peer` writes the answer back onto a span that lacks it, so a trace and the
``otelfin_dependency_duration_seconds{peer=...}`` series name the same peer: as
``server.address`` when it is a host (what newer semantic conventions set), as
``peer.service`` otherwise (a database name, a system).

A core module: it imports no pillar, so metrics and the offline tools can both use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from otelfin._outcome import attributes_of, set_on_ending

__all__ = ["UNKNOWN_PEER", "host_of", "peer_of", "peer_source", "stamp_peer", "stamp_span"]

#: The peer of a span that carries nothing naming its other end.
UNKNOWN_PEER = "unknown"
_MAX_LENGTH = 100

_HOST_KEYS = ("net.peer.name", "network.peer.address", "net.sock.peer.addr")
_URL_KEYS = ("url.full", "http.url")
_DB_KEYS = ("db.namespace", "db.name")
_SYSTEM_KEYS = ("db.system.name", "db.system", "messaging.system", "rpc.system")
# A host as it is, without port, scheme, brackets or list: urlsplit would return it lower-cased.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
# Where a host comes from (stamped as server.address); anything else names, not locates.
_HOST_SOURCES = frozenset(("server.address", *_URL_KEYS, *_HOST_KEYS, "messaging.url"))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.strip() if isinstance(value, str) else ""


def host_of(value: object) -> str:
    """The host in ``value``: a URL, ``host:port``, ``[v6]:port``, or a JSON list of them.

    Returns ``""`` when there is none. Credentials, ports, paths and queries never come back.
    """
    text = _text(value)
    if not text:
        return ""
    if _PLAIN_HOST.fullmatch(text):  # the common case: a bare name or IPv4 address
        return text.lower()  # as urlsplit's hostname gives it
    if text[0] in '["':  # aiokafka and kafka-python write the broker list as JSON
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return next((h for h in map(host_of, parsed) if h), "")
        if isinstance(parsed, str):
            return host_of(parsed)
    text = text.split(",", 1)[0].strip()  # "host1:9092,host2:9092"
    if "://" not in text:
        if text.count(":") > 1 and not text.startswith("["):
            return text  # a bare IPv6 address
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:  # an unbalanced "[" and the like
        return ""
    return host if host and not any(c.isspace() for c in host) else ""


def _database(value: object) -> str:
    text = _text(value)
    if text.startswith("file:"):  # an SQLite URI: file:ledger.db?mode=ro
        text = text[5:].split("?", 1)[0]
    if "/" in text or "\\" in text:
        text = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return text


def peer_source(attributes: Mapping[str, object]) -> tuple[str, str]:
    """``(peer, key)``: the peer of a span's attributes and the attribute it came from.

    ``key`` is ``""`` for the last resort, :data:`UNKNOWN_PEER`.
    """
    get = attributes.get
    server = get("server.address")
    if server:
        host = host_of(server)
        if host:
            return host, "server.address"
    service = _text(get("peer.service"))
    if service:
        return service, "peer.service"
    for key in _URL_KEYS:
        url = _text(get(key))
        host = host_of(url) if "://" in url else ""
        if host:
            return host, key
    for key in _HOST_KEYS:
        host = _text(get(key))
        if host:
            return host, key
    host = host_of(get("messaging.url"))
    if host:
        return host, "messaging.url"
    for key in _DB_KEYS:
        name = _database(get(key))
        if name:
            return name, key
    for key in ("rpc.service", *_SYSTEM_KEYS):
        name = _text(get(key))
        if name:
            return name, key
    return UNKNOWN_PEER, ""


def peer_of(attributes: Mapping[str, object]) -> str:
    """The peer of a CLIENT/PRODUCER span's attributes; never ``""`` (see the module doc)."""
    peer = peer_source(attributes)[0]
    return peer if len(peer) <= _MAX_LENGTH else peer[:_MAX_LENGTH]


def stamp_peer(attributes: Mapping[str, object]) -> tuple[str, str] | None:
    """The attribute to add so a span names its peer as the metrics do, or None.

    ``("server.address", host)`` for a host found elsewhere (or a JSON broker list in
    ``server.address``), ``("peer.service", name)`` for a name that is not a host; None
    when ``server.address`` or ``peer.service`` already says it.
    """
    peer, key = peer_source(attributes)
    if key in ("peer.service", ""):
        return None
    if key == "server.address":
        return None if peer == attributes.get("server.address") else ("server.address", peer)
    if key in _HOST_SOURCES:
        return "server.address", peer
    return "peer.service", peer


def stamp_span(span: Any) -> None:
    """Add :func:`stamp_peer`'s attribute to an SDK span that is ending.

    Called from a span processor's ``_on_ending`` (see ``otelfin.scrub._spans``): the span's
    attributes are already frozen there, so the one key is added through the SDK's mapping
    (:func:`otelfin._outcome.set_on_ending`), keeping its limits and dropped count. A span
    that is full is left alone (the key would push its oldest attribute out).
    """
    attributes = attributes_of(span)
    stamp = stamp_peer(attributes)
    if stamp is None:
        return
    maxlen = getattr(getattr(span, "_attributes", None), "maxlen", None)
    if maxlen is not None and len(attributes) >= maxlen:
        return
    set_on_ending(span, {stamp[0]: stamp[1]})

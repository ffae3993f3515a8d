"""``peer`` of a dependency: every attribute set the instrumentations write names a peer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otelfin._peer import UNKNOWN_PEER, host_of, peer_of, peer_source, stamp_peer
from otelfin.instrument.transports.grpc import target_address

# What each official instrumentation (0.66b1, default semantic conventions) and otelfin's own
# put on a CLIENT/PRODUCER span, as recorded against the real clients, and the peer it gets.
RECORDED = [
    ({"http.method": "GET", "http.url": "https://acq.example:8443/v1/auth?pan=x"}, "acq.example"),
    ({"http.request.method": "GET", "url.full": "https://u:pw@[2001:db8::1]:443/p"}, "2001:db8::1"),
    ({"db.system": "postgresql", "db.name": "test", "net.peer.name": "pg.internal"}, "pg.internal"),
    ({"db.system": "redis", "net.peer.name": "127.0.0.1", "net.peer.port": 6379}, "127.0.0.1"),
    ({"messaging.system": "rabbitmq", "net.peer.name": "mq.internal"}, "mq.internal"),
    ({"messaging.system": "kafka", "messaging.url": '["k1:9092", "k2:9092"]'}, "k1"),
    ({"messaging.system": "kafka", "server.address": '["k3:9092"]'}, "k3"),  # aiokafka
    ({"messaging.system": "kafka", "server.address": '"k4:9092"'}, "k4"),
    ({"messaging.system": "kafka", "server.address": "k5", "server.port": 9092}, "k5"),
    ({"db.system": "sqlite", "db.name": "/var/lib/app/ledger.db"}, "ledger.db"),
    ({"db.system.name": "postgresql", "db.namespace": "payments"}, "payments"),
    ({"db.system": "sqlite"}, "sqlite"),
    ({"rpc.system": "grpc", "rpc.service": "pay.Ledger", "rpc.method": "Post"}, "pay.Ledger"),
    ({"rpc.system": "grpc", "server.address": "ledger", "rpc.service": "pay.Ledger"}, "ledger"),
    ({"peer.service": "acquirer-x", "http.url": "https://acq.example/"}, "acquirer-x"),
    ({"server.address": "api.acq", "peer.service": "acquirer-x"}, "api.acq"),
    ({"network.peer.address": "10.0.0.7"}, "10.0.0.7"),
    ({}, UNKNOWN_PEER),
    ({"http.url": "not a url", "server.address": ""}, UNKNOWN_PEER),
]


@pytest.mark.parametrize(("attributes", "peer"), RECORDED)
def test_each_recorded_attribute_set_names_its_peer(
    attributes: dict[str, object], peer: str
) -> None:
    """server.address, else peer.service, URL host, net.peer.name, broker, DB, RPC service."""
    assert peer_of(attributes) == peer


def test_urls_give_their_host_only() -> None:
    """Credentials, ports, paths and queries never reach the label."""
    assert host_of("https://user:secret@pay.example:8443/x?card=4111") == "pay.example"
    assert host_of("pay.example:443") == "pay.example"
    assert host_of("[::1]:50051") == "::1"
    assert host_of("h1:9092,h2:9092") == "h1"
    assert host_of("[unbalanced") == ""
    assert host_of(b"bytes.example") == "bytes.example"


@given(st.dictionaries(st.sampled_from([k for a, _ in RECORDED for k in a]), st.text(max_size=40)))
def test_peer_is_never_empty(attributes: dict[str, object]) -> None:
    """Whatever the attributes hold, the peer is a non-empty label of bounded length."""
    peer = peer_of(attributes)
    assert peer and len(peer) <= 100


def test_stamp_names_the_same_peer_on_the_span() -> None:
    """A span gets server.address for a host, peer.service for a name, nothing when it has one."""
    assert stamp_peer({"http.url": "https://acq.example/x"}) == ("server.address", "acq.example")
    assert stamp_peer({"db.system": "sqlite", "db.name": "/d/l.db"}) == ("peer.service", "l.db")
    assert stamp_peer({"server.address": '["k1:9092"]'}) == ("server.address", "k1")
    assert stamp_peer({"server.address": "k1"}) is None
    assert stamp_peer({"peer.service": "acquirer-x", "http.url": "https://a/"}) is None
    assert stamp_peer({}) is None
    for attributes, _ in RECORDED:
        stamp = stamp_peer(attributes)
        if stamp is not None:
            assert peer_of({**attributes, stamp[0]: stamp[1]}) == peer_of(attributes)
            assert peer_source({**attributes, stamp[0]: stamp[1]})[1] == stamp[0]


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("localhost:50051", ("localhost", 50051)),
        ("dns:///ledger.internal:443", ("ledger.internal", 443)),
        ("dns://8.8.8.8/ledger:443", ("ledger", 443)),
        ("ipv4:10.0.0.1:50051", ("10.0.0.1", 50051)),
        ("ipv6:[::1]:50051", ("::1", 50051)),
        ("ledger", ("ledger", None)),
        ("unix:/run/ledger.sock", ("ledger.sock", None)),
    ],
)
def test_grpc_targets(target: str, address: tuple[str, int | None]) -> None:
    """Every gRPC target form gives the host (and port) the channel talks to."""
    assert target_address(target) == address

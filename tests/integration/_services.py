"""In-process clients and servers for the integration tests: RabbitMQ on 127.0.0.1:5672
(guest/guest) and a one-method gRPC ledger."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
#: The ledger's one method (request and response are raw bytes).
LEDGER_POST = "/otelfin.test.Ledger/Post"


def amqp_connection() -> Any:
    """A blocking pika connection to the local RabbitMQ as guest."""
    import pika

    params = pika.ConnectionParameters(
        AMQP_HOST, AMQP_PORT, credentials=pika.PlainCredentials("guest", "guest")
    )
    return pika.BlockingConnection(params)


def consume(channel: Any, queue: str, on_message: Callable[..., None]) -> None:
    """Run ``on_message`` (pika's callback) until it calls ``stop_consuming``; then drop the
    queue."""
    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    channel.queue_delete(queue)


def _ident(b: bytes) -> bytes:
    return b


def ledger_server(post: Callable[[bytes, Any], bytes]) -> tuple[Any, int]:
    """A started gRPC server answering :data:`LEDGER_POST` with ``post(request, context)``,
    and its 127.0.0.1 port."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "otelfin.test.Ledger", {"Post": grpc.unary_unary_rpc_method_handler(post, _ident, _ident)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def ledger_call(channel: Any) -> Any:
    """The client stub for :data:`LEDGER_POST` on a gRPC ``channel``."""
    return channel.unary_unary(LEDGER_POST, _ident, _ident)

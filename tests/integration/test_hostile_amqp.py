"""RabbitMQ at 127.0.0.1:5672: hostile AMQP header tables are ignored safely by the consumer."""

from __future__ import annotations

import uuid
from typing import Any

from otelfin.testing import configured_for_test
from tests.integration._services import amqp_connection
from tests.integration.conftest import require_service

HOST, PORT = "127.0.0.1", 5672
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_hostile_headers_start_new_traces_and_messages_still_arrive() -> None:
    """Ints, binary, nested tables, duplicates and oversized values: callback runs, no parent."""
    require_service("RabbitMQ", HOST, PORT, "rabbitmq-server -detached")
    import pika

    hostile: list[dict[str, Any] | None] = [
        {"traceparent": 12345},
        {"traceparent": b"\xff\xfe" * 10, "tracestate": b"\xff"},
        {"traceparent": {"nested": TP}},
        {"traceparent": [TP, "x"]},
        {"traceparent": "0" * 100_000},
        None,
        {"baggage": "k=" + "v" * 20_000, "Traceparent": TP},  # the one valid parent
    ]
    queue = f"otelfin.hostile.{uuid.uuid4().hex[:12]}"
    foreign = amqp_connection()  # publishes before configure(): an uninstrumented producer
    try:
        producer = foreign.channel()
        producer.queue_declare(queue, auto_delete=True)
        for headers in hostile:
            producer.basic_publish("", queue, b"pay", pika.BasicProperties(headers=headers))
        with configured_for_test(log_level="warning") as exporter:
            connection = amqp_connection()
            got: list[bytes] = []
            try:
                channel = connection.channel()

                def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
                    got.append(body)
                    ch.basic_ack(method.delivery_tag)
                    if len(got) == len(hostile):
                        ch.stop_consuming()

                channel.basic_consume(queue, on_message)
                connection.call_later(10, channel.stop_consuming)
                channel.start_consuming()
            finally:
                connection.close()
            consumers = [s for s in exporter.get_finished_spans() if s.name.endswith("receive")]
    finally:
        foreign.close()
    assert got == [b"pay"] * len(hostile)
    parents = [s.parent.trace_id if s.parent else None for s in consumers]
    assert parents == [None] * (len(hostile) - 1) + [int(TP[3:35], 16)]

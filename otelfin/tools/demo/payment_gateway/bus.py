"""The settlement bus: in-memory by default, RabbitMQ (aio-pika) or NATS (nats-py) by URL.

With a broker, ``otelfin.configure()`` has already instrumented the client library, so
publishing and consuming carry the trace with no code here. The in-memory bus is a
``multiprocessing`` queue the demo owns (no broker to install); it moves the trace itself with
otelfin's carrier adapters, the way the README shows for code that moves messages on its own.
"""

from __future__ import annotations

import asyncio
import json
import queue as queue_module
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from opentelemetry import trace

from otelfin.propagation import extract, headers_getter, headers_setter, inject

Handler = Callable[[dict[str, Any]], Awaitable[None]]
DESTINATION = "settlements"


class Bus(Protocol):
    """What the ledger publishes to and the settlement worker consumes from."""

    async def start(self) -> None: ...

    async def publish(self, message: dict[str, Any]) -> None: ...

    async def subscribe(self, handler: Handler) -> None:
        """Start delivering messages to ``handler``; returns once the subscription is live."""
        ...

    async def close(self) -> None: ...


class InMemoryBus:
    """A queue shared by the demo's processes; producer and consumer spans made here."""

    def __init__(self, shared: Any) -> None:
        self._queue = shared
        self._tracer = trace.get_tracer("payment_gateway.bus")
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._attributes = {
            "messaging.system": "in-memory",
            "messaging.destination.name": DESTINATION,
        }

    async def start(self) -> None:
        return None

    async def publish(self, message: dict[str, Any]) -> None:
        headers: dict[str, str] = {}
        with self._tracer.start_as_current_span(
            f"send {DESTINATION}",
            kind=trace.SpanKind.PRODUCER,
            attributes={**self._attributes, "messaging.operation.type": "send"},
        ):
            inject(headers, headers_setter)
            self._queue.put({"headers": headers, "body": message})

    async def subscribe(self, handler: Handler) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume(handler))

    async def _consume(self, handler: Handler) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                item = await loop.run_in_executor(None, self._queue.get, True, 0.1)
            except queue_module.Empty:
                continue
            context = extract(item["headers"], headers_getter)
            with self._tracer.start_as_current_span(
                f"process {DESTINATION}",
                context=context,
                kind=trace.SpanKind.CONSUMER,
                attributes={**self._attributes, "messaging.operation.type": "process"},
            ):
                await handler(item["body"])

    async def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            await self._task


class AmqpBus:
    """RabbitMQ through aio-pika; one queue per demo run, expiring when unused."""

    def __init__(self, url: str, queue_name: str) -> None:
        self.url = url
        self.queue_name = queue_name
        self._connection: Any = None
        self._channel: Any = None
        self._queue: Any = None

    async def start(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect_robust(self.url, timeout=10)
        self._channel = await self._connection.channel()
        self._queue = await self._channel.declare_queue(
            self.queue_name, durable=False, arguments={"x-expires": 120_000}
        )

    async def publish(self, message: dict[str, Any]) -> None:
        import aio_pika

        await self._channel.default_exchange.publish(
            aio_pika.Message(body=json.dumps(message).encode(), content_type="application/json"),
            routing_key=self.queue_name,
        )

    async def subscribe(self, handler: Handler) -> None:
        async def on_message(message: Any) -> None:
            async with message.process():
                await handler(json.loads(message.body))

        await self._queue.consume(on_message)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class NatsBus:
    """NATS core publish/subscribe through nats-py; one subject per demo run."""

    def __init__(self, url: str, subject: str) -> None:
        self.url = url
        self.subject = subject
        self._nc: Any = None

    async def start(self) -> None:
        import nats

        self._nc = await nats.connect(self.url, connect_timeout=10, max_reconnect_attempts=3)

    async def publish(self, message: dict[str, Any]) -> None:
        await self._nc.publish(self.subject, json.dumps(message).encode())

    async def subscribe(self, handler: Handler) -> None:
        async def on_message(msg: Any) -> None:
            await handler(json.loads(msg.data))

        await self._nc.subscribe(self.subject, cb=on_message)
        await self._nc.flush()

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.flush()
            await self._nc.close()
            self._nc = None


def make_bus(kind: str, url: str | None, name: str, shared: Any) -> Bus:
    """The bus a service uses: ``memory``, ``amqp`` or ``nats``."""
    if kind == "amqp" and url:
        return AmqpBus(url, name)
    if kind == "nats" and url:
        return NatsBus(url, name)
    return InMemoryBus(shared)

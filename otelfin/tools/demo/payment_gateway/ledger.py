"""The ledger: a gRPC service (``grpc.aio``) that books double entries in SQLite.

Messages are JSON over gRPC's generic handlers, so the example needs no generated stubs. The
gRPC server and client spans and the SQL spans of the stdlib ``sqlite3`` driver all come from
``otelfin.configure()``. After booking, the ledger publishes a settlement message on the bus.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from typing import Any

import grpc

import otelfin

from .bus import Bus

SERVICE = "otelfin.demo.Ledger"
POST_METHOD = f"/{SERVICE}/Post"
#: A merchant whose ledger account is frozen: its payments fail with LEDGER-003.
FROZEN_MERCHANT = "m-frozen"

log = otelfin.get_logger(component="ledger")


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _loads(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a ledger message is a JSON object")
    return value


class Ledger:
    """Books payments; one SQLite connection guarded by a lock (the server is one event loop)."""

    def __init__(self, db_path: str, bus: Bus, published: Any = None) -> None:
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (payment_id TEXT, account TEXT, "
            "amount_minor INTEGER, currency TEXT, channel TEXT, card_last4 TEXT)"
        )
        self._lock = threading.Lock()
        self._bus = bus
        self._published = published

    @otelfin.traced(name="ledger.book", attributes={"payment.channel": "channel"})
    def book(
        self, payment_id: str, merchant: str, amount: float, currency: str, channel: str, card: str
    ) -> None:
        """Write the debit and the credit in one transaction."""
        if merchant == FROZEN_MERCHANT:
            raise otelfin.OtelfinError("LEDGER-003", "Ledger account is frozen", merchant=merchant)
        minor = round(amount * 100)
        rows = [
            (payment_id, f"merchant:{merchant}", minor, currency, channel, card[-4:]),
            (payment_id, f"clearing:{channel}", -minor, currency, channel, card[-4:]),
        ]
        with self._lock:
            cursor = self._db.cursor()  # cursor calls are what the driver instrumentation sees
            cursor.execute("BEGIN")
            cursor.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
            cursor.execute("COMMIT")

    async def post(self, request: dict[str, Any], context: Any) -> dict[str, Any]:
        """The ``Post`` RPC: book, publish the settlement, answer with the entry id."""
        payment_id = str(request.get("payment_id") or uuid.uuid4())
        try:
            self.book(
                payment_id,
                str(request["merchant"]),
                float(request["amount"]),
                str(request["currency"]),
                str(request["channel"]),
                str(request["card_number"]),
            )
        except otelfin.OtelfinError as exc:
            log.warning("ledger_rejected", error_code=exc.code, payment_id=payment_id)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, exc.code)
        except (KeyError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"PAY-001: {exc}")
        await self._bus.publish(
            {
                "payment_id": payment_id,
                "merchant": request["merchant"],
                "amount": request["amount"],
                "currency": request["currency"],
                "channel": request["channel"],
                # The settlement file format wants the card number; it is masked in every log.
                "card_number": request["card_number"],
            }
        )
        if self._published is not None:
            with self._published.get_lock():
                self._published.value += 1
        log.info("ledger_booked", payment_id=payment_id, card=request["card_number"])
        return {"payment_id": payment_id, "status": "booked"}

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Post": grpc.unary_unary_rpc_method_handler(
                    self.post, request_deserializer=_loads, response_serializer=_dumps
                )
            },
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class LedgerClient:
    """The payment API's side: one ``grpc.aio`` channel, a 2 s deadline per call.

    The channel is opened on first use, inside the server's event loop (a ``grpc.aio`` channel
    belongs to the loop it was created in).
    """

    def __init__(self, target: str) -> None:
        self._target = target
        self._channel: Any = None
        self._post: Any = None

    async def post(self, message: dict[str, Any]) -> dict[str, Any]:
        """Book a payment; a rejection raises ``OtelfinError`` with the ledger's code."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
            self._post = self._channel.unary_unary(
                POST_METHOD, request_serializer=_dumps, response_deserializer=_loads
            )
        try:
            result: dict[str, Any] = await self._post(message, timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            code = details.split(":", 1)[0]
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise otelfin.OtelfinError("GW-003", "Upstream service timed out") from None
            if code.startswith(("LEDGER-", "PAY-")):
                raise otelfin.OtelfinError(code, "Ledger rejected the payment") from None
            raise otelfin.OtelfinError("GW-004", "Upstream service unavailable") from None
        return result

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

"""The settlement worker: consumes settlement messages and books them for the scheme."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import otelfin

log = otelfin.get_logger(component="settlement-worker")


class SettlementWorker:
    """Settles each message; ``settled`` (a shared counter, optional) counts them."""

    def __init__(self, settled: Any = None, seed: int = 11) -> None:
        self._settled = settled
        self._random = random.Random(seed)

    @otelfin.traced(name="settlement.settle", attributes={"payment.channel": "channel"})
    async def settle(self, payment_id: str, channel: str, amount: float, card_number: str) -> None:
        """Add the payment to the scheme's batch (a few milliseconds)."""
        await asyncio.sleep(0.002 + self._random.random() * 0.004)
        if self._random.random() < 0.02:
            log.warning("settlement_mismatch", error_code="SETTLE-002", payment_id=payment_id)
        log.info(
            "settlement_booked",
            payment_id=payment_id,
            channel=channel,
            amount=f"{amount:.2f}",
            card=card_number,
        )

    async def handle(self, message: dict[str, Any]) -> None:
        """The bus handler: one message, one settlement; counted even when it fails."""
        try:
            await self.settle(
                str(message["payment_id"]),
                str(message["channel"]),
                float(message["amount"]),
                str(message["card_number"]),
            )
        except (KeyError, ValueError, TypeError):
            log.error("settlement_undecodable", error_code="SETTLE-003")
        finally:
            if self._settled is not None:
                with self._settled.get_lock():
                    self._settled.value += 1

"""Payment channels and their acquirers (simulated latency, declines and timeouts).

Each channel's acquirer answers in ~10-60 ms and declines a few payments with registered codes
(``PAY-006`` issuer declined, ``PAY-012`` insufficient balance). The demo's slow channel gets
a slow path: a share of its calls wait 0.7-1.5 s (well clear of the
noise a busy machine adds to the others), and those past the acquirer timeout fail
with ``PAY-011``. Nothing downstream knows which channel is slow: the P99 report has to find it
in the metrics.
"""

from __future__ import annotations

import asyncio
import random

import otelfin

CHANNELS = ("card", "alipay", "unionpay", "wechat", "applepay")
#: Share of the traffic per channel, in the order above.
WEIGHTS = (0.34, 0.2, 0.16, 0.18, 0.12)
ACQUIRER_TIMEOUT = 1.4
SLOW_SHARE = 0.4


class Acquirers:
    """The simulated acquirers; ``slow_channel`` (or None) gets the slow path."""

    def __init__(self, slow_channel: str | None, seed: int = 7) -> None:
        if slow_channel is not None and slow_channel not in CHANNELS:
            raise ValueError(f"unknown channel {slow_channel!r}: expected one of {CHANNELS}")
        self.slow_channel = slow_channel
        self._random = random.Random(seed)

    @otelfin.traced(
        name="acquirer.authorise",
        kind="client",
        attributes={"payment.channel": "channel", "payment.amount": "amount"},
    )
    async def authorise(self, channel: str, amount: float, card_number: str) -> str:
        """An authorisation code, or a registered decline/timeout error."""
        rnd = self._random
        delay = 0.008 + min(rnd.expovariate(1 / 0.015), 0.05)
        if channel == self.slow_channel and rnd.random() < SLOW_SHARE:
            delay = rnd.uniform(0.7, 1.5)
        if delay >= ACQUIRER_TIMEOUT:
            await asyncio.sleep(ACQUIRER_TIMEOUT)
            raise otelfin.OtelfinError(
                "PAY-011", "Authorisation timed out at the card network", channel=channel
            )
        await asyncio.sleep(delay)
        roll = rnd.random()
        if roll < 0.05:
            # The acquirer echoes the card number in its message; otelfin masks it everywhere.
            raise otelfin.OtelfinError("PAY-006", f"Issuer declined card {card_number}")
        if roll < 0.08:
            raise otelfin.OtelfinError("PAY-012", "Insufficient balance")
        return f"A{rnd.randrange(10**6):06d}"

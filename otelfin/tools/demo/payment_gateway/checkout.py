"""The merchant's checkout: drives a mixed workload against the payment API with httpx.

Channels follow :data:`.channels.WEIGHTS`; amounts are log-normal; about 1% of payments are
large enough for the fraud rules and 1% go to a merchant whose ledger account is frozen. The
card numbers are the schemes' public test numbers (Luhn-valid, so otelfin must mask them).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import otelfin

from .channels import CHANNELS, WEIGHTS
from .ledger import FROZEN_MERCHANT

#: Public test card numbers per channel (wallet channels are backed by cards too).
TEST_CARDS: dict[str, tuple[str, ...]] = {
    "card": ("4111111111111111", "5555 5555 5555 4444", "378282246310005"),
    "alipay": ("4000056655665556", "5200828282828210"),
    "unionpay": ("6200000000000005", "6250941006528599"),
    "wechat": ("4012888888881881", "5105-1051-0510-5100"),
    "applepay": ("4242424242424242", "4000000760000002"),
}


@dataclass
class Progress:
    """What the workload has done so far (read by the progress display)."""

    total: int
    deadline: float
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    done: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@otelfin.traced(name="checkout.pay", kind="client", attributes={"payment.channel": "channel"})
async def pay(client: Any, url: str, channel: str, body: dict[str, Any]) -> int:
    """One payment; returns the HTTP status."""
    response = await client.post(url, json=body)
    return int(response.status_code)


def _outcome(status: int) -> str:
    if status == 201:
        return "authorised"
    if status == 504:
        return "timeout"
    return "declined" if 400 <= status < 500 else f"http {status}"


async def drive(
    api_url: str,
    *,
    requests: int,
    seconds: float,
    concurrency: int = 12,
    seed: int = 7,
    on_progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Send up to ``requests`` payments, stopping early after ``seconds``."""
    import httpx

    rnd = random.Random(seed)
    progress = Progress(total=requests, deadline=time.monotonic() + seconds)
    url = f"{api_url}/v1/payments"

    def body_of() -> tuple[str, dict[str, Any]]:
        channel = rnd.choices(CHANNELS, WEIGHTS)[0]
        amount = round(min(rnd.lognormvariate(4.0, 1.0), 3_000.0), 2)
        if rnd.random() < 0.01:
            amount = 5_000.0  # over the fraud rule's limit: RISK-001
        merchant = FROZEN_MERCHANT if rnd.random() < 0.01 else f"m-{rnd.randrange(40):03d}"
        return channel, {
            "channel": channel,
            "amount": amount,
            "currency": "CNY",
            "merchant": merchant,
            "card_number": rnd.choice(TEST_CARDS[channel]),
        }

    async def worker(client: Any) -> None:
        while progress.sent < requests and time.monotonic() < progress.deadline:
            progress.sent += 1
            channel, body = body_of()
            try:
                status = await pay(client, url, channel, body)
                progress.outcomes[_outcome(status)] += 1
            except Exception as exc:  # the workload goes on; the report counts it
                progress.outcomes[f"client error {type(exc).__name__}"] += 1
            progress.done += 1
            if on_progress is not None:
                on_progress(progress)

    async with httpx.AsyncClient(timeout=5.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(max(1, concurrency))))
    return progress

"""Keyed purchases and cancels through a failover, remembering every answer (bounded in count and time)."""

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import aiohttp

from ..reliability.books import Attempt

MAX_SECONDS = 150  # a load never outlives this, whatever happens to the cluster
MAX_ATTEMPTS = 30_000
CANCEL_EVERY = 4  # one purchase in four is cancelled by its buyer right after


@dataclass
class Purchase(Attempt):
    detail: str | None = None  # the problem detail of a 503
    sent_at: float = 0.0


@dataclass
class Cancel:
    purchase_id: str
    status: int | None = None
    detail: str | None = None


@dataclass
class Load:
    port: int
    option_id: str
    purchases: list[Purchase] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, concurrency: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, deadline) for _ in range(concurrency)))

    async def _client(self, session: aiohttp.ClientSession, deadline: float) -> None:
        while not self.stopping.is_set() and time.monotonic() < deadline and len(self.purchases) < MAX_ATTEMPTS:
            index = len(self.purchases)
            purchase = Purchase(key=f"ha-{uuid.uuid4()}", quantity=1 + index % 3,
                                user_id=str(uuid.uuid4()), sent_at=time.monotonic())
            self.purchases.append(purchase)
            await self.buy(session, purchase)
            if purchase.status == 201 and index % CANCEL_EVERY == 0:
                cancel = Cancel(purchase.purchase_id)
                self.cancels.append(cancel)
                await self.cancel(session, cancel)
            if purchase.status != 201:
                await asyncio.sleep(0.1)  # told to retry later (or no answer): a polite client backs off

    async def buy(self, session: aiohttp.ClientSession, purchase: Purchase) -> None:
        url = f"http://127.0.0.1:{self.port}/ticket_options/{self.option_id}/purchases"
        body = {"quantity": purchase.quantity, "user_id": purchase.user_id}
        purchase.status, answer = await post(session, url, body, {"Idempotency-Key": purchase.key})
        purchase.purchase_id = answer.get("id") if purchase.status == 201 else None
        purchase.detail = answer.get("detail")
        purchase.answered_at = time.monotonic()

    async def cancel(self, session: aiohttp.ClientSession, cancel: Cancel) -> None:
        url = f"http://127.0.0.1:{self.port}/purchases/{cancel.purchase_id}/cancel"
        cancel.status, answer = await post(session, url, None, {})
        cancel.detail = answer.get("detail")

    def recovered_at(self, fault_at: float, until: float) -> float | None:
        """When purchases were answered 201 again: the first 201 among those sent after the last one
        that failed (sent between the fault and `until`); None if none yet."""
        window = [p for p in self.purchases if fault_at <= p.sent_at <= until and p.answered_at]
        last_failure = max((p.sent_at for p in window if p.status != 201), default=fault_at)
        answered = [p.answered_at for p in window if p.status == 201 and p.sent_at >= last_failure]
        return min(answered) if answered else None


async def post(session: aiohttp.ClientSession, url: str, body, headers: dict) -> tuple[int | None, dict]:
    """(status, JSON answer); (None, {}) when no answer came (connection refused or cut)."""
    try:
        async with session.post(url, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None, {}

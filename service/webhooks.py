"""Webhook delivery: signed POSTs of the event feed to the subscriptions (sql/webhooks.sql).

Each server process runs one delivery loop with a pool of its own (admin role,
DELIVERY_POOL_SIZE connections), so receivers never take buyers' connections.
The database decides what is sent: claim_webhook_deliveries leases attempts
(FOR UPDATE SKIP LOCKED) to whichever worker of whichever instance asks, never
two at once to one subscription, and finish_webhook_attempt applies the answer.
The signing secret comes with the claim and is never logged.

Fair shares: the loop has WEBHOOK_CONCURRENCY slots. An attempt holds one until
its answer is recorded, or for SLOT_SECONDS: then it waits for its answer (to
the timeout) beside the slots, and the slot goes to the next subscription with
work. A receiver that never answers thus holds back only its own subscription,
however many there are; what waits beside the slots is at most one attempt per
subscription (the claim's rule) and MAX_WAITING in all.
"""

import asyncio
import logging
import time
from datetime import datetime, timezone

import aiohttp
import asyncpg
from standardwebhooks.webhooks import Webhook
from yarl import URL

from . import failover
from .config import WebhookSettings
from .destinations import DestinationRefused, GuardedResolver, check_literal

log = logging.getLogger(__name__)

DELIVERY_POOL_SIZE = 2
# How long an attempt may hold a slot before it waits beside the slots: longer than a healthy
# receiver takes to answer, short against the lag a subscription may suffer for others.
SLOT_SECONDS = 0.25
# Attempts of one process waiting beside the slots, at most (then nothing more is claimed).
MAX_WAITING = 100
# claim_webhook_deliveries' p_limit, at most (sql/webhooks.sql).
MAX_CLAIM = 100
USER_AGENT = "ticket-allocation-webhooks/1"
# How often the lag gauges are refreshed (one cheap query per subscription).
LAG_REFRESH_SECONDS = 5.0


def signed_headers(secret: str, message_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt (https://www.standardwebhooks.com/)."""
    now = datetime.now(timezone.utc)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


class Deliverer:
    def __init__(self, admin_url: str, settings: WebhookSettings, metrics, database_settings: dict):
        self.admin_url = admin_url
        self.settings = settings
        self.metrics = metrics
        self.database_settings = database_settings
        self.in_flight: set[asyncio.Task] = set()
        self.in_slots: set[int] = set()  # attempt ids holding a slot
        self.changed = asyncio.Event()  # a slot was given up, or an attempt ended

    async def run(self, stopping: asyncio.Event) -> None:
        pool = await asyncpg.create_pool(**failover.pool_options(self.admin_url), min_size=0,
                                         max_size=DELIVERY_POOL_SIZE, server_settings=self.database_settings)
        timeout = aiohttp.ClientTimeout(sock_connect=self.settings.timeout, sock_read=self.settings.timeout,
                                        total=2 * self.settings.timeout)
        # One connection per attempt in flight: the loop bounds them, an attempt never waits for one.
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.settings.allowed_networks),
                                         limit=self.settings.concurrency + MAX_WAITING)
        async with pool, aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            try:
                await self.loop(pool, session, stopping)
            finally:
                # An attempt cut short stays unfinished: its lease runs out and it is sent again.
                for task in self.in_flight:
                    task.cancel()
                await asyncio.gather(*self.in_flight, return_exceptions=True)

    def free_slots(self) -> int:
        return min(self.settings.concurrency - len(self.in_slots),
                   self.settings.concurrency + MAX_WAITING - len(self.in_flight), MAX_CLAIM)

    async def loop(self, pool, session, stopping: asyncio.Event) -> None:
        next_lag_refresh = 0.0
        while not stopping.is_set():
            self.changed.clear()
            free = self.free_slots()
            claimed = []
            try:
                if free > 0:
                    claimed = await pool.fetch(
                        "SELECT * FROM api.claim_webhook_deliveries($1, make_interval(secs => $2))",
                        free, self.settings.lease)
                if time.monotonic() >= next_lag_refresh:
                    next_lag_refresh = time.monotonic() + LAG_REFRESH_SECONDS
                    self.metrics.webhook_lag_observed(await pool.fetch("SELECT * FROM api.webhook_lag()"))
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, asyncio.TimeoutError) as error:
                log.warning("could not claim webhook deliveries (will retry): %s: %s", type(error).__name__, error)
            for delivery in claimed:
                self.in_slots.add(delivery["attempt_id"])
                task = asyncio.create_task(self.deliver(pool, session, delivery))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            if len(claimed) < free or free <= 0:
                # Nothing more is due, or no slot is free: until a slot frees or an attempt ends
                # (its subscription's next event is due then), or the next poll.
                await self.wait_for_change(stopping)

    async def wait_for_change(self, stopping: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self.changed.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.settings.poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def leave_slot(self, attempt_id: int) -> None:
        if attempt_id in self.in_slots:
            self.in_slots.discard(attempt_id)
            self.changed.set()

    async def deliver(self, pool, session: aiohttp.ClientSession, delivery) -> None:
        answer = asyncio.ensure_future(self.post(session, delivery))
        try:
            if not (await asyncio.wait({answer}, timeout=SLOT_SECONDS))[0]:
                self.leave_slot(delivery["attempt_id"])  # slow or hanging: it waits beside the slots
            status, error = await answer
            await self.record(pool, delivery, status, error)
        finally:
            answer.cancel()  # when this task is cancelled (shutdown); nothing when done
            self.leave_slot(delivery["attempt_id"])
            self.changed.set()

    async def record(self, pool, delivery, status: int | None, error: str | None) -> None:
        try:
            outcome = await pool.fetchval("SELECT api.finish_webhook_attempt($1, $2, $3)",
                                          delivery["attempt_id"], status, error)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, asyncio.TimeoutError) as db_error:
            log.warning("could not record webhook attempt %s (its lease will expire and it is sent again): %s: %s",
                        delivery["attempt_id"], type(db_error).__name__, db_error)
            return
        self.metrics.webhook_delivered(outcome)
        if outcome != "delivered":
            log.info("webhook %s: event %s attempt %s %s (%s)", delivery["webhook_id"], delivery["event_id"],
                     delivery["attempt"], outcome, status or error)

    async def post(self, session: aiohttp.ClientSession, delivery) -> tuple[int | None, str | None]:
        """The receiver's status, or None and why there was none. Redirects are not followed."""
        body = delivery["body"]  # jsonb as text: the exact bytes signed and sent
        url = delivery["url"]
        try:
            host = URL(url).host or ""
        except ValueError as error:  # stored before the URL rule (migrations/0014_webhook_fairness.sql)
            return None, f"InvalidURL: the URL cannot be parsed ({error})"[:500]
        try:
            # aiohttp does not resolve IP literals, so the resolver's check does not see them.
            check_literal(host, self.settings.allowed_networks)
            headers = signed_headers(delivery["secret"], str(delivery["event_id"]), body)
            async with session.post(url, data=body.encode(), headers=headers, allow_redirects=False) as response:
                return response.status, None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as error:
            if isinstance(getattr(error, "os_error", None), DestinationRefused):
                error = error.os_error  # refused by the resolver: aiohttp's wrapper would hide why
            return None, f"{type(error).__name__}: {error}"[:500]

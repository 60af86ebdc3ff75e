"""Load that remembers every answer, and the reconciliation of answers with the database."""

import asyncio
import time
import uuid
from dataclasses import dataclass

import aiohttp
import psycopg

from ..conftest import read_books_sync


@dataclass
class Attempt:
    key: str
    quantity: int
    user_id: str
    status: int | None = None  # None: no answer (connection refused, reset, ...)
    purchase_id: str | None = None
    answered_at: float = 0.0


async def purchase_load(port: int, option_id: str, seconds: float, concurrency: int, limit: int = 20_000) -> list[Attempt]:
    """Purchases (each with its own Idempotency-Key) from `concurrency` clients for `seconds`; bounded by `limit`."""
    attempts: list[Attempt] = []
    deadline = time.monotonic() + seconds
    url = f"http://127.0.0.1:{port}/ticket_options/{option_id}/purchases"
    timeout = aiohttp.ClientTimeout(total=15)

    async def client(session):
        while time.monotonic() < deadline and len(attempts) < limit:
            attempt = Attempt(key=f"load-{uuid.uuid4()}", quantity=1 + len(attempts) % 3, user_id=str(uuid.uuid4()))
            attempts.append(attempt)
            try:
                async with session.post(url, json={"quantity": attempt.quantity, "user_id": attempt.user_id},
                                        headers={"Idempotency-Key": attempt.key}) as response:
                    attempt.status = response.status
                    body = await response.json(content_type=None)
                    if response.status == 201:
                        attempt.purchase_id = body["id"]
                if attempt.status == 503:
                    await asyncio.sleep(0.1)  # told to retry later: a polite client backs off
            except (aiohttp.ClientError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)  # no answer: the server is away; don't spin
            attempt.answered_at = time.monotonic()

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return attempts


@dataclass
class Reconciliation:
    sent: int
    acknowledged: int
    committed_without_answer: list[str]  # keys whose purchase committed but whose 201 was lost in the fault


def reconcile(owner_url: str, option_id: str, initial: int, attempts: list[Attempt]) -> Reconciliation:
    """Checks the books against the answers; raises AssertionError on anything lost or made up."""
    with psycopg.connect(owner_url) as conn:
        committed = dict(conn.execute(
            """SELECT k.key, p.id::text FROM purchases p JOIN idempotency_keys k ON k.purchase_id = p.id
               WHERE p.ticket_option_id = %s""", (option_id,)).fetchall())
        purchases = conn.execute("SELECT count(*) FROM purchases WHERE ticket_option_id = %s", (option_id,)).fetchone()[0]
        option_books = read_books_sync(conn, option_id)  # asserts that check_consistency() finds nothing
    by_key = {attempt.key: attempt for attempt in attempts}
    acknowledged = {a.key: a.purchase_id for a in attempts if a.status == 201}

    assert option_books["total"] == initial  # and remaining + sold == total, by check_consistency()
    assert purchases == len(committed), "a purchase without its idempotency key"
    for key, purchase_id in acknowledged.items():  # nothing acknowledged is lost
        assert committed.get(key) == purchase_id, f"201 for {key} but purchase {purchase_id} is not stored"
    unanswered = [key for key in committed if key not in acknowledged]
    for key in unanswered:  # nothing stored that was not asked for, and only lost answers are unacknowledged
        assert key in by_key, f"purchase for unknown key {key}"
        assert by_key[key].status in (None, 503), (key, by_key[key].status)
    return Reconciliation(len(attempts), len(acknowledged), unanswered)


async def retry_with_same_keys(port: int, option_id: str, attempts: list[Attempt], keys: list[str]) -> None:
    """Sends the requests for `keys` again, same key and body, and records the new answers in `attempts`."""
    by_key = {attempt.key: attempt for attempt in attempts}
    async with aiohttp.ClientSession() as session:
        for key in keys:
            attempt = by_key[key]
            async with session.post(
                f"http://127.0.0.1:{port}/ticket_options/{option_id}/purchases",
                json={"quantity": attempt.quantity, "user_id": attempt.user_id},
                headers={"Idempotency-Key": key},
            ) as response:
                attempt.status = response.status
                attempt.purchase_id = (await response.json(content_type=None)).get("id")

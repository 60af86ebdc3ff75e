"""Coalescing: many purchases (or holds) of one option, one database call.

Purchases of one option queue on its row lock in PostgreSQL, and each holds
the lock until its commit is flushed; one call at a time per option is the
most the database can take. So, within this worker: while a purchase call
for an option is in flight, later purchases of that option wait here, and
when the call returns they go to PostgreSQL together as ONE call of
purchase_tickets_batch (one lock, one commit), still decided one by one, in
arrival order, each all or nothing. At low load a batch is one request, so
nothing waits. Holds are coalesced the same way, by a second coalescer
calling hold_tickets_batch (BatchFunction says which function). Both take one
array of api.ticket_request, the shape every batch of the SQL API shares; a
batch here names one option (the one whose lock its requests would queue on).

Orders are not coalesced: an order locks all of its lines' options (and the
options sharing their quotas) at once, so two orders rarely queue on the same
set, and an order is already one call and one commit for many lines.

Bounds, so that load cannot turn into failures: a batch is capped by its
purchases, by the tickets it inserts (a long transaction would meet
statement_timeout and fail every buyer in it) and by its keyed requests
(each takes an advisory lock in PostgreSQL's shared lock table); and the
queue of an option is capped: beyond it a purchase is refused at once
(Overloaded: 503 + Retry-After) rather than waiting longer than a client
would.
"""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

# More than these waits for the next call: bounds one transaction's length.
MAX_BATCH = 256
# 256 purchases of 1,000 tickets would insert 256,000 rows in one transaction.
MAX_BATCH_TICKETS = 4_000
# The lock table holds max_locks_per_transaction (64 by default) x connections;
# a batch of 256 keys could exhaust it (SQLSTATE 53200) when several run at once.
MAX_BATCH_KEYS = 32
# Purchases waiting for one option in this worker; more are shed (Overloaded).
# At the measured ~5 batches of 256 per second, the last would wait about a second.
MAX_QUEUE = 1_024


class Overloaded(Exception):
    """Too many purchases of the option wait already: retry shortly, nothing was done."""


class Refused(Exception):
    """A request the batch function refused; carries what purchase_tickets would raise."""

    def __init__(self, refusal):
        super().__init__(refusal["message"])
        self.sqlstate = refusal["sqlstate"]
        self.message = refusal["message"]
        self.column_name = refusal["column_name"]
        self.detail = refusal["detail"]


@dataclass
class PendingRequest:
    user_id: uuid.UUID
    quantity: int
    idempotency_key: str | None
    caller: str | None  # whose key it is (see idempotency_scope in sql/idempotency.sql)
    ttl: timedelta | None = None  # holds only; None: the SQL function's default
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class BatchFunction:
    """A batch function of the SQL API, which takes one api.ticket_request[] (option, user, quantity,
    idempotency key, caller, ttl: a tuple per request, as asyncpg sends a composite), and the field
    of its outcome rows that answers a request (the other is its refusal)."""
    query: str
    answer: str
    noun: str  # in the Overloaded message


PURCHASE_BATCH = BatchFunction("SELECT * FROM api.purchase_tickets_batch($1::api.ticket_request[])", "receipt", "purchases")
HOLD_BATCH = BatchFunction("SELECT * FROM api.hold_tickets_batch($1::api.ticket_request[])", "hold", "holds")


def ticket_requests(option_id: uuid.UUID, batch: list[PendingRequest]) -> list[tuple]:
    """The batch as api.ticket_request[]: every request of it names the option."""
    return [(option_id, p.user_id, p.quantity, p.idempotency_key, p.caller, p.ttl) for p in batch]


def take_batch(waiting: list[PendingRequest]) -> list[PendingRequest]:
    """The longest head of the queue within the bounds (never empty: one purchase always fits)."""
    tickets = keys = 0
    size = 0
    for pending in waiting[:MAX_BATCH]:
        keyed = pending.idempotency_key is not None
        if size and (tickets + pending.quantity > MAX_BATCH_TICKETS or keys + keyed > MAX_BATCH_KEYS):
            break  # in arrival order: the rest go in the next call
        tickets += pending.quantity
        keys += keyed
        size += 1
    batch = waiting[:size]
    del waiting[:size]
    return batch


class Coalescer:
    def __init__(self, pool: asyncpg.Pool, pool_timeout: float, function: BatchFunction = PURCHASE_BATCH,
                 batch_sent: Callable[[int], None] | None = None, max_queue: int = MAX_QUEUE):
        self._function = function
        self._pool = pool
        self._pool_timeout = pool_timeout
        self._batch_sent = batch_sent  # metrics: called with each batch's size
        self._max_queue = max_queue
        self._waiting: dict[uuid.UUID, list[PendingRequest]] = {}
        self._senders: set[asyncio.Task] = set()

    def queue_depth(self) -> int:
        """Requests waiting in this worker for their option's call in flight."""
        return sum(len(waiting) for waiting in self._waiting.values())

    async def submit(
        self, option_id: uuid.UUID, user_id: uuid.UUID, quantity: int, idempotency_key: str | None,
        caller: str | None = None, ttl: timedelta | None = None,
    ):
        """The request's answer (a purchase's receipt, a hold); raises Refused, Overloaded, or the
        database error that failed its batch."""
        pending = PendingRequest(user_id, quantity, idempotency_key, caller, ttl)
        waiting = self._waiting.get(option_id)
        if waiting is not None:  # a call for this option is in flight: ride the next one
            if len(waiting) >= self._max_queue:
                raise Overloaded(f"{len(waiting)} {self._function.noun} of this option are waiting already")
            waiting.append(pending)
        else:
            self._waiting[option_id] = [pending]
            sender = asyncio.create_task(self._send_until_drained(option_id))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await pending.answer

    async def _send_until_drained(self, option_id: uuid.UUID) -> None:
        waiting = self._waiting[option_id]
        try:
            while waiting:
                batch = take_batch(waiting)
                if self._batch_sent:
                    self._batch_sent(len(batch))
                await self._send(option_id, batch)
        finally:
            del self._waiting[option_id]

    async def _send(self, option_id: uuid.UUID, batch: list[PendingRequest]) -> None:
        try:
            async with self._pool.acquire(timeout=self._pool_timeout) as conn:
                outcomes = await conn.fetch(self._function.query, ticket_requests(option_id, batch))
        except BaseException as error:
            if isinstance(error, asyncpg.DataError) and len(batch) > 1:
                # A value of some request that asyncpg cannot encode, or PostgreSQL cannot take
                # (SQLSTATE class 22): nothing was written. Halve the batch until that request is
                # alone, so that only it fails.
                middle = len(batch) // 2
                await self._send(option_id, batch[:middle])
                await self._send(option_id, batch[middle:])
                return
            # The whole call failed, so nothing of it was written: each request gets the error.
            for pending in batch:
                if not pending.answer.done():
                    pending.answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.answer.done():  # its client went away; the outcome stands
                continue
            if outcome["refusal"] is not None:
                pending.answer.set_exception(Refused(outcome["refusal"]))
            else:
                pending.answer.set_result(outcome[self._function.answer])

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

Orders are coalesced the same way by a third coalescer calling
place_orders_batch (api.order_request[]: user, lines, ttl, key, caller), per
set of options: orders over the same options queue on the same locks (every
option of the set and of its quotas), so they ride one call, each still all or
nothing. Orders over different sets go in calls of their own, in parallel.

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
from collections.abc import Callable, Hashable
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
    request: tuple  # what the batch function takes for it: an api.ticket_request or api.order_request
    tickets: int  # what it would insert, at most
    keyed: bool  # it has an Idempotency-Key (an advisory lock in PostgreSQL)
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class BatchFunction:
    """A batch function of the SQL API, which takes one array of a composite request type (a tuple
    per request, as asyncpg sends a composite), and the field of its outcome rows that answers a
    request (the other is its refusal)."""
    query: str
    answer: str
    noun: str  # in the Overloaded message


# api.ticket_request: (option, user, quantity, idempotency key, caller, ttl).
PURCHASE_BATCH = BatchFunction("SELECT * FROM api.purchase_tickets_batch($1::api.ticket_request[])", "receipt", "purchases")
HOLD_BATCH = BatchFunction("SELECT * FROM api.hold_tickets_batch($1::api.ticket_request[])", "hold", "holds")
# api.order_request: (user, lines [(option, quantity), ...], ttl, idempotency key, caller).
ORDER_BATCH = BatchFunction("SELECT * FROM api.place_orders_batch($1::api.order_request[])", "order", "orders")


def take_batch(waiting: list[PendingRequest]) -> list[PendingRequest]:
    """The longest head of the queue within the bounds (never empty: one purchase always fits)."""
    tickets = keys = 0
    size = 0
    for pending in waiting[:MAX_BATCH]:
        if size and (tickets + pending.tickets > MAX_BATCH_TICKETS or keys + pending.keyed > MAX_BATCH_KEYS):
            break  # in arrival order: the rest go in the next call
        tickets += pending.tickets
        keys += pending.keyed
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
        self._waiting: dict[Hashable, list[PendingRequest]] = {}  # by what they queue on in PostgreSQL
        self._senders: set[asyncio.Task] = set()

    def queue_depth(self) -> int:
        """Requests waiting in this worker for their option's call in flight."""
        return sum(len(waiting) for waiting in self._waiting.values())

    async def submit(
        self, option_id: uuid.UUID, user_id: uuid.UUID, quantity: int, idempotency_key: str | None,
        caller: str | None = None, ttl: timedelta | None = None,
    ):
        """A purchase's receipt, or a hold, of the option (an api.ticket_request of it); raises
        Refused, Overloaded, or the database error that failed its batch."""
        request = (option_id, user_id, quantity, idempotency_key, caller, ttl)
        return await self.submit_request(option_id, request, quantity, idempotency_key is not None)

    async def submit_request(self, queue: Hashable, request: tuple, tickets: int, keyed: bool):
        """The answer to `request` (the batch function's composite), sent with the requests queued on
        the same `queue` (an option, or an order's set of options); raises as submit."""
        pending = PendingRequest(request, tickets, keyed)
        waiting = self._waiting.get(queue)
        if waiting is not None:  # a call for the same locks is in flight: ride the next one
            if len(waiting) >= self._max_queue:
                raise Overloaded(f"{len(waiting)} {self._function.noun} are waiting for the same tickets already")
            waiting.append(pending)
        else:
            self._waiting[queue] = [pending]
            sender = asyncio.create_task(self._send_until_drained(queue))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await pending.answer

    async def _send_until_drained(self, queue: Hashable) -> None:
        waiting = self._waiting[queue]
        try:
            while waiting:
                batch = take_batch(waiting)
                if self._batch_sent:
                    self._batch_sent(len(batch))
                await self._send(batch)
        finally:
            del self._waiting[queue]

    async def _send(self, batch: list[PendingRequest]) -> None:
        try:
            async with self._pool.acquire(timeout=self._pool_timeout) as conn:
                outcomes = await conn.fetch(self._function.query, [pending.request for pending in batch])
        except BaseException as error:
            if isinstance(error, asyncpg.DataError) and len(batch) > 1:
                # A value of some request that asyncpg cannot encode, or PostgreSQL cannot take
                # (SQLSTATE class 22): nothing was written. Halve the batch until that request is
                # alone, so that only it fails.
                middle = len(batch) // 2
                await self._send(batch[:middle])
                await self._send(batch[middle:])
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

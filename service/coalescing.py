"""Coalescing: the purchases (or holds) that arrive while a call is in flight, one database call.

A purchase is cheap for PostgreSQL; its transaction's commit is not. So,
within this worker, requests wait here while a call is in flight, and go to
PostgreSQL together as ONE call of purchase_tickets_batch (one transaction,
one commit), whatever their options: each still decided alone, in arrival
order, all or nothing, with its own answer. At low load a batch is one
request, so nothing waits. Holds are coalesced the same way, by a second
coalescer calling hold_tickets_batch (BatchFunction says which function).
Both take one array of api.ticket_request, the shape every batch of the SQL
API shares.

Lanes. Options are spread over LANES lanes by a hash of their id, and each
lane has at most one call in flight: so the batches of a hot option (always
in one lane) never race each other for its row lock, while the other lanes
go on with the other options. (One lane for everything would leave the
database one call at a time; a lane per option would give every purchase of
a spread sale its own commit again: README, Performance, measures both.)

A locked option never holds up the others. A lane's call takes its locks
with SKIP LOCKED (p_skip_locked): a request whose option another session
holds (a psql user's open transaction, another worker's batch) comes back
`deferred`, nothing done for it, while the rest of the batch is decided.
That option then leaves the lanes: its deferred requests, and every later
one of it, queue for a call of their own (one in flight per option) that
waits for the lock as purchase_tickets does (at most lock_timeout). Once
that queue is empty, the option's requests go by the lanes again.

Orders are coalesced the same way by a third coalescer calling
place_orders_batch (api.order_request[]: user, lines, ttl, key, caller), each
still all or nothing; an order rides the lane of its first option (in id
order), and is deferred as a whole when any of its options is locked, then
queues with the orders over the same set of options.

Bounds, so that load cannot turn into failures: a batch is capped by its
requests, by the tickets it inserts (a long transaction would meet
statement_timeout and fail every buyer in it) and by its keyed requests
(each takes an advisory lock in PostgreSQL's shared lock table); and each
queue (a lane's, a locked option's) is capped: beyond it a request is
refused at once (Overloaded: 503 + Retry-After) rather than waiting longer
than a client would.
"""

import asyncio
import uuid
import zlib
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
# Requests waiting in one queue (a lane, or a locked option's) in this worker; more are shed
# (Overloaded). At the measured ~5 batches of 256 per second, the last would wait about a second.
MAX_QUEUE = 1_024
# Calls in flight at once per worker and coalescer, besides those of locked options; within the
# default pool of 10. On 2 CPUs, spread purchases at 64 connections went fastest with 2 lanes
# (bigger batches than with 4 or 8: fewer commits; README, Performance), and 2 keep a slow call
# (a hot option's full batch) from holding up every other option.
LANES = 2


class Overloaded(Exception):
    """Too many requests wait already in this queue: retry shortly, nothing was done."""


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
    options: tuple[uuid.UUID, ...]  # the options it names, in id order: what it waits on when locked
    tickets: int  # what it would insert, at most
    keyed: bool  # it has an Idempotency-Key (an advisory lock in PostgreSQL)
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class BatchFunction:
    """A batch function of the SQL API: its call, which takes one array of a composite request type
    (a tuple per request, as asyncpg sends a composite) and p_skip_locked, and the field of its
    outcome rows that answers a request (the others: its refusal, and whether it was deferred)."""
    query: str
    answer: str
    noun: str  # in the Overloaded message


# api.ticket_request: (option, user, quantity, idempotency key, caller, ttl).
PURCHASE_BATCH = BatchFunction(
    "SELECT * FROM api.purchase_tickets_batch($1::api.ticket_request[], p_skip_locked => $2)", "receipt", "purchases")
HOLD_BATCH = BatchFunction(
    "SELECT * FROM api.hold_tickets_batch($1::api.ticket_request[], p_skip_locked => $2)", "hold", "holds")
# api.order_request: (user, lines [(option, quantity), ...], ttl, idempotency key, caller).
ORDER_BATCH = BatchFunction(
    "SELECT * FROM api.place_orders_batch($1::api.order_request[], p_skip_locked => $2)", "order", "orders")


def take_batch(waiting: list[PendingRequest]) -> list[PendingRequest]:
    """The longest head of the queue within the bounds (never empty: one request always fits)."""
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
                 batch_sent: Callable[[int], None] | None = None, max_queue: int = MAX_QUEUE, lanes: int = LANES):
        self._function = function
        self._pool = pool
        self._pool_timeout = pool_timeout
        self._batch_sent = batch_sent  # metrics: called with each batch's size
        self._max_queue = max_queue
        # Per lane: the requests waiting for its next call (a call is in flight when it is in _sending).
        self._lanes: list[list[PendingRequest]] = [[] for _ in range(lanes)]
        self._sending: set[int] = set()
        # Options (or an order's set of them) found locked by another session: their requests,
        # waiting for a call that waits.
        self._locked: dict[tuple[uuid.UUID, ...], list[PendingRequest]] = {}
        self._senders: set[asyncio.Task] = set()

    def lane_of(self, options: tuple[uuid.UUID, ...]) -> int:
        """The lane of a request naming these options (in id order; none: an order the batch function refuses)."""
        return zlib.crc32(options[0].bytes if options else b"") % len(self._lanes)

    def queue_depth(self) -> int:
        """Requests waiting in this worker for a call in flight."""
        return sum(map(len, self._lanes)) + sum(map(len, self._locked.values()))

    def waiting_for(self, *options: uuid.UUID) -> int:
        """Requests of exactly these options (in id order) waiting in this worker for a call in flight."""
        locked = self._locked.get(options)
        if locked is not None:
            return len(locked)
        return sum(pending.options == options for pending in self._lanes[self.lane_of(options)])

    async def submit(
        self, option_id: uuid.UUID, user_id: uuid.UUID, quantity: int, idempotency_key: str | None,
        caller: str | None = None, ttl: timedelta | None = None,
    ):
        """A purchase's receipt, or a hold, of the option (an api.ticket_request of it); raises
        Refused, Overloaded, or the database error that failed its batch."""
        request = (option_id, user_id, quantity, idempotency_key, caller, ttl)
        return await self.submit_request((option_id,), request, quantity, idempotency_key is not None)

    async def submit_request(self, options: tuple[uuid.UUID, ...], request: tuple, tickets: int, keyed: bool):
        """The answer to `request` (the batch function's composite), which names `options` (in id
        order); raises as submit."""
        pending = PendingRequest(request, options, tickets, keyed)
        locked = self._locked.get(options)
        if locked is not None:  # behind the call of its options that waits for their locks
            self._enqueue(locked, pending)
        else:
            lane = self.lane_of(options)
            self._enqueue(self._lanes[lane], pending)
            if lane not in self._sending:
                self._sending.add(lane)
                self._start(self._drain_lane(lane))
        return await pending.answer

    async def drain(self) -> None:
        """Returns once no call is in flight: each sends what its queue holds, and a lane's call may
        start a locked option's, which is awaited too. For the shutdown, when nothing new comes."""
        while self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)

    def _enqueue(self, waiting: list[PendingRequest], pending: PendingRequest) -> None:
        if len(waiting) >= self._max_queue:
            raise Overloaded(f"{len(waiting)} {self._function.noun} are waiting already")
        waiting.append(pending)

    def _start(self, sending) -> None:
        sender = asyncio.create_task(sending)
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    async def _drain_lane(self, lane: int) -> None:
        waiting = self._lanes[lane]
        try:
            while waiting:
                batch = take_batch(waiting)
                if self._batch_sent:
                    self._batch_sent(len(batch))
                for pending in await self._send(batch, skip_locked=True):
                    self._defer(pending)
        finally:
            self._sending.discard(lane)

    def _defer(self, pending: PendingRequest) -> None:
        """A request whose options were locked: to their queue, in arrival order, with the requests
        of the same options waiting in its lane (they came later)."""
        options = pending.options
        locked = self._locked.get(options)
        if locked is None:
            locked = self._locked[options] = [pending]
            lane = self._lanes[self.lane_of(options)]
            locked += [later for later in lane if later.options == options]
            lane[:] = [other for other in lane if other.options != options]
            self._start(self._drain_locked(options))
        else:
            locked.append(pending)

    async def _drain_locked(self, options: tuple[uuid.UUID, ...]) -> None:
        waiting = self._locked[options]
        try:
            while waiting:
                batch = take_batch(waiting)
                if self._batch_sent:
                    self._batch_sent(len(batch))
                await self._send(batch, skip_locked=False)  # waits for the locks: nothing is deferred
        finally:
            del self._locked[options]

    async def _send(self, batch: list[PendingRequest], skip_locked: bool) -> list[PendingRequest]:
        """Sends the batch and answers its requests; returns those deferred (in order)."""
        try:
            async with self._pool.acquire(timeout=self._pool_timeout) as conn:
                outcomes = await conn.fetch(self._function.query, [pending.request for pending in batch], skip_locked)
        except BaseException as error:
            if isinstance(error, asyncpg.DataError) and len(batch) > 1:
                # A value of some request that asyncpg cannot encode, or PostgreSQL cannot take
                # (SQLSTATE class 22): nothing was written. Halve the batch until that request is
                # alone, so that only it fails.
                middle = len(batch) // 2
                return (await self._send(batch[:middle], skip_locked)
                        + await self._send(batch[middle:], skip_locked))
            # The whole call failed, so nothing of it was written: each request gets the error.
            for pending in batch:
                if not pending.answer.done():
                    pending.answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return []
        deferred = []
        for pending, outcome in zip(batch, outcomes, strict=True):
            if outcome["deferred"]:
                deferred.append(pending)  # nothing was done for it (even if its client went away)
            elif pending.answer.done():  # its client went away; the outcome stands
                continue
            elif outcome["refusal"] is not None:
                pending.answer.set_exception(Refused(outcome["refusal"]))
            else:
                pending.answer.set_result(outcome[self._function.answer])
        return deferred

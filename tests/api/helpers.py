"""Small helpers shared by the API tests."""

import asyncio
import uuid

import asyncpg

from tests.people import USER
from tests.sql import helpers as sql_helpers


async def create_option(client, allocation=100, name="Gig", desc="Main hall", headers=None, **fields):
    """POST /ticket_options (`fields` besides, e.g. max_per_user); the created option."""
    response = await client.post("/ticket_options", json={"name": name, "desc": desc, "allocation": allocation, **fields},
                                 headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


def request_headers(key, headers):
    """`headers`, with `key` (when not None) as the Idempotency-Key."""
    return {**(headers or {}), **({"Idempotency-Key": key} if key is not None else {})}


async def buy(client, option_id, quantity=1, *, user_id=USER, key=None, headers=None):
    """POST /ticket_options/{option_id}/purchases for `user_id`; `key` (when not None) goes in the
    Idempotency-Key header, `headers` besides. Returns the response."""
    return await client.post(f"/ticket_options/{option_id}/purchases",
                             json={"quantity": quantity, "user_id": str(user_id)}, headers=request_headers(key, headers))


async def hold(client, option_id, quantity=1, *, user_id=USER, key=None, headers=None, **fields):
    """POST /ticket_options/{option_id}/holds, as buy() does (`fields` besides, e.g. ttl_seconds). The response."""
    return await client.post(f"/ticket_options/{option_id}/holds",
                             json={"quantity": quantity, "user_id": str(user_id), **fields},
                             headers=request_headers(key, headers))


async def answer(request) -> tuple[int, str | None, dict]:
    """(status, Retry-After, JSON body) of an awaited request (e.g. buy(...)), its body read: its
    connection is free for the next request."""
    response = await request
    return response.status, response.headers.get("Retry-After"), await response.json()


async def assert_problem(response, status, problem_type=None):
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == status
    assert body["title"]
    if problem_type is not None:
        assert body["type"] == problem_type
    return body


async def advance_clock(database_url, interval):
    """Moves the SQL clock (settings.clock_offset, owner only): expiry is tested so, never by waiting."""
    conn = await asyncpg.connect(database_url)
    try:
        await sql_helpers.advance_clock(conn, interval)
    finally:
        await conn.close()


class HeldOptionLock:
    """Another session holding an option's row lock, as a long transaction would: purchases of
    the option wait for it (or time out)."""

    def __init__(self, database_url, option_id):
        self.database_url, self.option_id = database_url, uuid.UUID(str(option_id))

    async def __aenter__(self):
        self.conn = await asyncpg.connect(self.database_url)
        self.transaction = self.conn.transaction()
        await self.transaction.start()
        await self.conn.execute("SELECT 1 FROM ticket_options WHERE id = $1 FOR UPDATE", self.option_id)
        return self

    async def blocked_calls(self) -> int:
        """How many sessions wait for this one. (pg_locks, not pg_stat_activity, which hides other roles' waits.)"""
        return await self.conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))")

    async def __aexit__(self, *exc):
        await self.transaction.rollback()
        await self.conn.close()


async def raw_request(client, method: str, path: str, headers: dict[str, bytes] | None = None, body: bytes = b""):
    """Sends bytes as they are (headers an HTTP client library would refuse, e.g. b"\\xff"); returns
    (status, headers, body bytes). One connection, closed after the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: test", b"Connection: close"]
        head += [name.encode() + b": " + value for name, value in (headers or {}).items()]
        head.append(b"Content-Length: %d" % len(body))
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, response_body = rest.partition(b"\r\n\r\n")
    response_headers = dict(
        line.decode("latin-1").split(": ", 1) for line in header_block.split(b"\r\n") if b": " in line
    )
    return int(status_line.split()[1]), {k.lower(): v for k, v in response_headers.items()}, response_body

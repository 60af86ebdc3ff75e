"""Faults survived with nothing lost: PostgreSQL restarts, vanishing clients, SIGTERM under load.

Every purchase carries an Idempotency-Key, so that afterwards each one in the
database can be matched with the answer its client got (books.reconcile).
"""

import asyncio
import json
import signal
import socket
import struct
import time
import uuid

import pytest

from ..processes import Server, request, served_env
from .books import Attempt, purchase_load, reconcile, retry_with_same_keys

pytestmark = [pytest.mark.slow, pytest.mark.process]

INITIAL = 1_000_000


def start_server(databases, tmp_path, name="server") -> Server:
    owner, api = databases
    return Server(served_env(owner, api, WORKERS="1"), tmp_path / f"{name}.log")


def new_option(server: Server) -> str:
    status, option = request(server.port, "POST", "/ticket_options", {"name": "On sale", "allocation": INITIAL})
    assert status == 201
    return option["id"]


async def test_postgres_restart_under_load(own_postgres, databases, tmp_path):
    server = start_server(databases, tmp_path)
    try:
        option_id = new_option(server)
        load = asyncio.create_task(purchase_load(server.port, option_id, seconds=7, concurrency=16))
        await asyncio.sleep(2)
        outage_started = time.monotonic()
        await asyncio.to_thread(own_postgres.restart, 1.5)
        back = time.monotonic()
        attempts = await load
        assert attempts[-1].answered_at > back, "the load ended before PostgreSQL came back"

        statuses = {a.status for a in attempts}
        assert statuses <= {201, 503}, statuses  # refused while away, never a 500
        during = [a for a in attempts if outage_started < a.answered_at < back]
        assert any(a.status == 503 for a in during), "no 503 while PostgreSQL was down"
        # Recovered by itself: the same server process buys again (bounded wait, in case CI is slow).
        (recovery,) = unanswered("recovery", 1)
        attempts.append(recovery)
        for _ in range(30):
            await retry_with_same_keys(server.port, option_id, [recovery], [recovery.key])
            if recovery.status == 201:
                break
            await asyncio.sleep(1)
        assert recovery.status == 201, "the service did not recover after PostgreSQL came back"

        books = reconcile(databases[0], option_id, INITIAL, attempts)
        # Retrying an unanswered request that did commit gives its purchase (matched by reconcile), nothing more.
        await retry_with_same_keys(server.port, option_id, attempts, books.committed_without_answer)
        assert reconcile(databases[0], option_id, INITIAL, attempts).committed_without_answer == []
        print(f"\nrestart: {books.sent} purchases sent, 1 restart, {books.acknowledged} acknowledged, "
              f"{len(books.committed_without_answer)} committed before the fault with the answer lost "
              f"(replayed by key), {sum(a.status == 503 for a in attempts)} answered 503, 0 lost")
    finally:
        assert server.stop() == 0


def vanishing_client(port: int, option_id: str, attempt: Attempt, full: bool) -> None:
    """A client that sends a purchase (all of it, or half its body) and vanishes without reading."""
    body = json.dumps({"quantity": attempt.quantity, "user_id": attempt.user_id}).encode()
    head = (f"POST /ticket_options/{option_id}/purchases HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {attempt.key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + (body if full else body[: len(body) // 2]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not a clean close


def unanswered(kind: str, count: int) -> list[Attempt]:
    return [Attempt(key=f"{kind}-{uuid.uuid4()}", quantity=1, user_id=str(uuid.uuid4())) for _ in range(count)]


async def test_clients_vanishing_mid_request(own_postgres, databases, tmp_path):
    server = start_server(databases, tmp_path)
    try:
        option_id = new_option(server)
        full, half = unanswered("vanished-full", 30), unanswered("vanished-half", 30)
        for attempt_full, attempt_half in zip(full, half):
            vanishing_client(server.port, option_id, attempt_half, full=False)
            vanishing_client(server.port, option_id, attempt_full, full=True)
        await asyncio.sleep(1)
        # The server is fine and has leaked no connection: a burst bigger than its pool goes through.
        after = await purchase_load(server.port, option_id, seconds=2, concurrency=20)
        assert {a.status for a in after} == {201}

        attempts = full + half + after
        books = reconcile(databases[0], option_id, INITIAL, attempts)  # half-sent ones bought nothing
        assert set(books.committed_without_answer) <= {a.key for a in full}
        # Each fully sent purchase, retried by its key, is stored exactly once.
        await retry_with_same_keys(server.port, option_id, attempts, [a.key for a in full])
        assert {a.status for a in full} == {201}
        assert reconcile(databases[0], option_id, INITIAL, attempts).committed_without_answer == []
        print(f"\nvanishing clients: 60 vanished mid-request (30 after half a body), "
              f"{len(books.committed_without_answer)} of the full ones had committed, "
              f"{len(after)} purchases after; each stored once, 0 lost")
    finally:
        assert server.stop() == 0


async def test_sigterm_under_load_finishes_what_it_accepted(own_postgres, databases, tmp_path):
    server = start_server(databases, tmp_path)
    option_id = new_option(server)
    load = asyncio.create_task(purchase_load(server.port, option_id, seconds=4, concurrency=16))
    await asyncio.sleep(1.5)
    server.process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(server.process.wait, 60)
    attempts = await load
    assert exit_code == 0
    assert {a.status for a in attempts} <= {201, None}  # answered in full, or never accepted
    assert sum(a.status == 201 for a in attempts) > 0

    books = reconcile(databases[0], option_id, INITIAL, attempts)
    # A second server answers the unanswered requests that did commit, by their keys.
    again = start_server(databases, tmp_path, "again")
    try:
        await retry_with_same_keys(again.port, option_id, attempts, books.committed_without_answer)
        assert reconcile(databases[0], option_id, INITIAL, attempts).committed_without_answer == []
    finally:
        assert again.stop() == 0
    print(f"\nSIGTERM: {books.sent} purchases sent, {books.acknowledged} acknowledged, "
          f"{len(books.committed_without_answer)} committed with the answer lost, 0 lost")

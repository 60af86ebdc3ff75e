"""An abuse run: valid purchases in one burst with every kind of bad request, slow clients and
vanishing clients. Every valid request is answered 201 or 409 as the books allow, every bad one a
4xx, none a 5xx, and the books check."""

import asyncio
import json
import random
import socket
import struct
import uuid

import psycopg

from ..conftest import read_books_sync
from ..people import USER
from ..processes import Server, request, served_env

ALLOCATION = 300
VALID = 400  # purchases of 1..3 tickets: more asked for than there is


TOKEN = "abuse-api-token"
AUTHORIZATION = f"Authorization: Bearer {TOKEN}\r\n".encode()


def purchase_head(option_id: str, extra: bytes = b"", query: str = "", authorization: bytes = AUTHORIZATION) -> bytes:
    return f"POST /ticket_options/{option_id}/purchases{query} HTTP/1.1\r\nHost: abuse\r\n".encode() + \
        authorization + extra


def body(user_id: str = USER, quantity: int = 1) -> bytes:
    return json.dumps({"quantity": quantity, "user_id": user_id}).encode()


JSON = b"Content-Type: application/json\r\n"


def bad_requests(option_id: str) -> list[tuple[str, bytes, bytes]]:
    """(kind, head, body) of each kind of bad request; each must be a 4xx."""
    return [
        ("braced user_id", purchase_head(option_id, JSON), body(f"{{{USER}}}")),
        ("urn user_id", purchase_head(option_id, JSON), body(f"urn:uuid:{USER}")),
        ("trailing-hyphen user_id", purchase_head(option_id, JSON), body(f"{USER}-")),
        ("non-UTF-8 key", purchase_head(option_id, JSON + b"Idempotency-Key: \xff\r\n"), body()),
        ("non-ASCII bearer", purchase_head(option_id, JSON, authorization=b"Authorization: Bearer \xff\r\n"), body()),
        ("no bearer", purchase_head(option_id, JSON, authorization=b""), body()),
        ("unknown query parameter", purchase_head(option_id, JSON, "?dry_run=true"), body()),
        ("*+json media type", purchase_head(option_id, b"Content-Type: application/json-patch+json\r\n"), body()),
        ("latin-1 charset", purchase_head(option_id, b"Content-Type: application/json; charset=latin-1\r\n"), body()),
        ("UTF-16 body", purchase_head(option_id, JSON), body().decode().encode("utf-16")),
        ("BOM", purchase_head(option_id, JSON), b"\xef\xbb\xbf" + body()),
        ("duplicate key", purchase_head(option_id, JSON), b'{"quantity": 2000, "quantity": 1, "user_id": "%s"}'
         % USER.encode()),
        ("quantity out of range", purchase_head(option_id, JSON), body(quantity=1001)),
        ("bad method", b"PO\x01ST / HTTP/1.1\r\nHost: abuse\r\n", b""),
        ("oversized header", purchase_head(option_id, JSON + b"X-Big: " + b"x" * 9000 + b"\r\n"), body()),
        ("Content-Length and Transfer-Encoding", purchase_head(option_id, JSON + b"Transfer-Encoding: chunked\r\n"),
         body()),
        ("list with urn user_id", f"GET /ticket_options/{option_id}/purchases?user_id=urn:uuid:{USER} HTTP/1.1\r\n"
         "Host: abuse\r\n".encode() + AUTHORIZATION, b""),
    ]


async def send(port: int, head: bytes, payload: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload) + payload)
        answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1])


async def slow(port: int, option_id: str) -> int:
    """Half a body, then nothing: the server's body read timeout answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = body()
    writer.write(purchase_head(option_id, JSON) + b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:10])
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def vanish(port: int, option_id: str) -> None:
    """Half a body, then a reset."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = body(str(uuid.uuid4()))
    writer.write(purchase_head(option_id, JSON) + b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:20])
    await writer.drain()
    await asyncio.sleep(random.uniform(0, 0.3))
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def valid(port: int, option_id: str, n: int) -> tuple[int, int]:
    quantity = 1 + n % 3
    head = purchase_head(option_id, JSON + f"Idempotency-Key: abuse-{n}\r\n".encode())
    return await send(port, head, body(str(uuid.uuid4()), quantity)), quantity


async def burst(port: int, option_id: str):
    bad = bad_requests(option_id) * 8
    jobs = [valid(port, option_id, n) for n in range(VALID)]
    jobs += [send(port, head, payload) for _, head, payload in bad]
    jobs += [slow(port, option_id) for _ in range(10)] + [vanish(port, option_id) for _ in range(20)]
    order = list(range(len(jobs)))
    random.Random(9).shuffle(order)
    results = [None] * len(jobs)

    async def run(i):
        results[i] = await jobs[i]
    async with asyncio.timeout(120):  # bounded: the whole burst
        await asyncio.gather(*(run(i) for i in order))
    return results[:VALID], list(zip([kind for kind, _, _ in bad], results[VALID:VALID + len(bad)])), \
        results[VALID + len(bad):VALID + len(bad) + 10]


def test_abuse_run(databases, tmp_path):
    owner, api = databases
    server = Server(served_env(owner, api, WORKERS="1", BODY_READ_TIMEOUT_MS="1000", API_TOKENS=TOKEN),
                    tmp_path / "server.log")
    try:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, option = request(server.port, "POST", "/ticket_options", {"name": "Abused", "allocation": ALLOCATION},
                                 headers=bearer)
        assert status == 201
        valid_answers, bad_answers, slow_answers = asyncio.run(burst(server.port, option["id"]))
        # The server still serves, with no leaked connection.
        status, after = request(server.port, "GET", f"/ticket_options/{option['id']}", headers=bearer)
        assert status == 200
    finally:
        assert server.stop() == 0
    assert {status for status, _ in valid_answers} <= {201, 409}
    sold = sum(quantity for status, quantity in valid_answers if status == 201)
    assert sold == after["sold"] and after["allocation"] == ALLOCATION - sold
    assert ALLOCATION - 2 <= sold <= ALLOCATION  # refused only when too few remained
    assert [(kind, status) for kind, status in bad_answers if not 400 <= status < 500] == []
    assert set(slow_answers) == {408}
    with psycopg.connect(owner) as conn:
        assert read_books_sync(conn, option["id"]) == {"remaining": ALLOCATION - sold, "sold": sold, "total": ALLOCATION}
        assert conn.execute("SELECT count(*) FROM purchases").fetchone()[0] == len(
            [1 for status, _ in valid_answers if status == 201])
    log = server.log()
    assert "Traceback" not in log and "database unreachable" not in log
    print(f"\nabuse run: {VALID} valid purchases ({sold} tickets sold of {ALLOCATION}), {len(bad_answers)} bad "
          f"requests of {len(bad_requests(option['id']))} kinds (all 4xx), 10 slow clients (408), 20 vanishing")

"""Slow and vanishing clients: timed out, counted as what they are, and unable to hold up a shutdown."""

import asyncio
import json
import signal
import socket
import struct
import time
import urllib.request

import pytest

from ..processes import Server, request, served_env
from ..people import USER
from .helpers import create_option

PARTIAL_BODY = b'{"quantity": 1, "user_id": "' + USER.encode()  # the rest never comes


@pytest.fixture
def body_read_timeout():
    return 0.3


async def send_part_of_a_purchase(host, port, option_id):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST /ticket_options/{option_id}/purchases HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(PARTIAL_BODY) + 20}\r\n\r\n".encode()
        + PARTIAL_BODY
    )
    await writer.drain()
    return reader, writer


async def test_a_body_that_does_not_arrive_in_time_is_408(client):
    option = await create_option(client)
    reader, writer = await send_part_of_a_purchase(client.server.host, client.server.port, option["id"])
    async with asyncio.timeout(30):  # a bound on the test, not a speed claim: the server waits 0.3 s
        answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["type"] == "/problems/request-timeout"
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["sold"] == 0


def test_a_client_hanging_up_mid_body_is_a_client_disconnect(database_url, api_database_url, tmp_path):
    # A real server: aiohttp's test server cancels the handler of a lost connection, run_app does not.
    server = Server(served_env(database_url, api_database_url, WORKERS="1"), tmp_path / "server.log")
    try:
        status, option = request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 5})
        assert status == 201

        async def hang_up():
            _, writer = await send_part_of_a_purchase("127.0.0.1", server.port, option["id"])
            await asyncio.sleep(0.5)  # the handler is reading the body (sooner, aiohttp drops the request unseen)
            # Reset, not close: what a vanishing client or a killed process does.
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        asyncio.run(hang_up())
        for _ in range(300):  # up to 30 s
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
                metrics = response.read().decode()
            if 'ticket_allocation_client_disconnects_total{worker="1"} 1.0' in metrics:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no client disconnect counted:\n{metrics}")
        assert request(server.port, "GET", f"/ticket_options/{option['id']}")[1]["sold"] == 0
    finally:
        assert server.stop() == 0
    assert "database unreachable" not in server.log()
    assert "client disconnected" in server.log()


def test_sigterm_is_not_held_up_by_slow_clients(database_url, api_database_url, tmp_path):
    """Three clients stuck mid-body: the server still exits within its shutdown window (aiohttp's
    default would wait 60 s for them)."""
    env = served_env(database_url, api_database_url, WORKERS="1", SHUTDOWN_TIMEOUT_MS="1000",
                     BODY_READ_TIMEOUT_MS="120000")
    server = Server(env, tmp_path / "server.log")

    async def stuck_clients():
        return [await send_part_of_a_purchase("127.0.0.1", server.port, USER) for _ in range(3)]

    loop = asyncio.new_event_loop()
    try:
        clients = loop.run_until_complete(stuck_clients())
        time.sleep(0.5)  # let the server start reading their bodies
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0  # generous: the window is 1 s
        for _, writer in clients:
            writer.close()
    finally:
        if server.process.poll() is None:
            server.process.kill()
        loop.close()

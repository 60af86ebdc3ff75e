"""Requests aiohttp's parser refuses: a problem+json 400 that echoes nothing, and no log flood."""

import asyncio
import logging

import pytest

SECRET = b"s3cr3t-echo-marker"
MALFORMED = [
    b"GE\x01T / HTTP/1.1\r\nHost: test\r\nX-Marker: " + SECRET + b"\r\n\r\n",  # a bad method
    b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + SECRET + b"x" * 9000 + b"\r\n\r\n",  # a header over 8,190 bytes
    b"GET / HTTP/1.1\r\nHost: test\r\n" + b"".join(b"X-%d: %s\r\n" % (n, SECRET) for n in range(70)) + b"\r\n",
    b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nX-M: " + SECRET + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: test\r\nX-Ctl: " + SECRET + b"\x01\r\n\r\n",  # a control character
]


async def send(client, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(data)
    async with asyncio.timeout(30):
        answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize("data", MALFORMED)
async def test_a_malformed_request_is_a_problem_that_echoes_nothing(client, data):
    answer = await send(client, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"400"
    assert b"content-type: application/problem+json" in head.lower()
    assert SECRET not in answer
    assert b'"status": 400' in body


async def test_malformed_requests_cannot_flood_the_log(client, caplog):
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for _ in range(5):
        for data in MALFORMED:
            await send(client, data)
    lines = [record for record in caplog.records if record.name == "aiohttp.server"]
    assert len(lines) <= 1  # one summary at most (none if the filter reported within the last minute)
    assert all(record.exc_info is None and SECRET.decode() not in record.getMessage() for record in lines)

"""Logs: one JSON object a line (or text), one line per request, request ids, no secrets."""

import io
import json
import logging
import subprocess
import sys
import time
import weakref
from datetime import datetime, timezone
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from service.config import PROJECT_ROOT
from service.logs import (
    REQUEST_ID_HEADER, BatchingStreamHandler, JsonFormatter, UtcMilliseconds,
    request_id_middleware,
)

from ..polling import wait_until
from ..processes import Server, request, served_env



def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict]:
    """(status, headers) of a GET, errors included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


@pytest.mark.process
def test_every_line_is_json_with_one_line_per_request_and_no_password(database_url, api_database_url, tmp_path):
    password = urlsplit(api_database_url).password
    server = Server(served_env(database_url, api_database_url, WORKERS="1"), tmp_path / "server.log")
    try:
        status, option = request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 1},
                                 headers={REQUEST_ID_HEADER: "order-7f3a"})
        assert status == 201
        status, headers = get(server.port, "/no/such/route", {REQUEST_ID_HEADER: "x" * 129})  # too long: replaced
        assert status == 404
        generated = headers[REQUEST_ID_HEADER]
        assert len(generated) == 32 and generated != "x" * 129
        status, headers = get(server.port, f"/ticket_options/{option['id']}")
        assert status == 200 and len(headers[REQUEST_ID_HEADER]) == 32
    finally:
        assert server.stop() == 0
    log = server.log()
    assert password not in log
    lines = [json.loads(line) for line in log.splitlines()]  # every line, startup and warnings included
    assert {"time", "level", "logger", "message", "pid"} <= lines[0].keys()
    assert any(f"listening on http://127.0.0.1:{server.port}" in line["message"] for line in lines)
    assert any("ADMIN_TOKEN is not set" in line["message"] and line["level"] == "warning" for line in lines)
    requests = [line for line in lines if line["logger"] == "aiohttp.access"]
    assert [(r["method"], r["path"], r["status"], r["request_id"]) for r in requests] == [
        ("POST", "/ticket_options", 201, "order-7f3a"),
        ("GET", "/no/such/route", 404, generated),
        ("GET", f"/ticket_options/{option['id']}", 200, headers[REQUEST_ID_HEADER]),
    ]
    assert all(r["remote"] == "127.0.0.1" and r["duration_ms"] >= 0 for r in requests)


@pytest.mark.process
def test_text_format_for_humans(database_url, api_database_url, tmp_path):
    server = Server(served_env(database_url, api_database_url, WORKERS="1", LOG_FORMAT="text"), tmp_path / "server.log")
    try:
        assert request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 1},
                       headers={REQUEST_ID_HEADER: "order-7f3a"})[0] == 201
    finally:
        assert server.stop() == 0
    log = server.log()
    assert f"listening on http://127.0.0.1:{server.port}" in log
    assert '127.0.0.1 "POST /ticket_options" 201 ' in log and "ms order-7f3a" in log
    assert not any(line.startswith("{") for line in log.splitlines())


def test_a_bad_log_format_is_refused(database_url, api_database_url):
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        env=served_env(database_url, api_database_url, LOG_FORMAT="yaml"),
    )
    assert result.returncode == 1
    assert "LOG_FORMAT='yaml' must be one of: json, text" in result.stderr


async def test_a_request_id_is_on_its_other_log_lines_and_on_errors(aiohttp_client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test_logs")
    log.addHandler(handler)

    async def logs_a_line(request):
        log.warning("something worth a line")
        raise web.HTTPNotFound()

    app = web.Application(middlewares=[request_id_middleware])
    app.router.add_get("/", logs_a_line)
    client = await aiohttp_client(app)
    try:
        response = await client.get("/", headers={REQUEST_ID_HEADER: "trace-1"})
    finally:
        log.removeHandler(handler)
    assert response.status == 404
    assert response.headers[REQUEST_ID_HEADER] == "trace-1"
    line = json.loads(stream.getvalue())
    assert (line["message"], line["request_id"]) == ("something worth a line", "trace-1")


def test_text_logs_escape_control_characters(database_url, api_database_url, tmp_path):
    """A %0a in a path (decoded to a newline) must not start a forged line."""
    server = Server(served_env(database_url, api_database_url, WORKERS="1", LOG_FORMAT="text"), tmp_path / "server.log")
    try:
        forged = "/x%0a2026-01-01%2000:00:00,000%20ERROR%20service[1]:%20forged%0d%1b[31m"
        assert get(server.port, forged)[0] == 404
    finally:
        assert server.stop() == 0
    lines = server.log().splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert any('"GET /x\\n2026-01-01 00:00:00,000 ERROR service[1]: forged\\r\\x1b[31m" 404' in line for line in lines)


def test_access_durations_have_sub_millisecond_precision(database_url, api_database_url, tmp_path):
    server = Server(served_env(database_url, api_database_url, WORKERS="1"), tmp_path / "server.log")
    try:
        for _ in range(20):
            assert get(server.port, "/healthz")[0] == 200
    finally:
        assert server.stop() == 0
    durations = [line["duration_ms"] for line in map(json.loads, server.log().splitlines())
                 if line["logger"] == "aiohttp.access"]
    assert len(durations) == 20
    # The event loop's clock (uvloop) counts whole milliseconds: a fast /healthz showed 0.0 or 1.0.
    assert any(duration != round(duration) for duration in durations)


def batching_handler_on(stream) -> logging.Logger:
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test_logs.batching.{id(stream)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


async def test_info_lines_wait_for_the_flush_interval_and_a_warning_writes_them_first_in_order():
    stream = io.StringIO()
    log = batching_handler_on(stream)
    log.info("first")
    log.info("second")
    assert stream.getvalue() == ""  # waiting, in a thread running an event loop
    log.warning("third")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["first", "second", "third"]
    log.info("fourth")
    await wait_until(lambda: stream.getvalue().count("\n") == 4, "the flush of the fourth line")
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "fourth"


def test_lines_are_written_at_once_without_an_event_loop():
    stream = io.StringIO()
    batching_handler_on(stream).info("at once")
    assert json.loads(stream.getvalue())["message"] == "at once"


async def test_waiting_lines_are_written_when_the_handler_is_flushed_at_exit():
    stream = io.StringIO()
    log = batching_handler_on(stream)
    log.info("before exit")
    logging.shutdown(handlerList=[weakref.ref(log.handlers[0])])  # what the logging module runs at exit
    assert json.loads(stream.getvalue())["message"] == "before exit"


def test_a_json_line_the_fast_encoder_refuses_is_still_a_json_line():
    line = JsonFormatter().line(logging.INFO, "aiohttp.access", "GET /x\udc80", {"path": "/x\udc80"})
    assert json.loads(line)["path"] == "/x\udc80"


def test_line_times_are_isoformat_to_the_millisecond():
    clock = UtcMilliseconds()
    for created in (0.0, 1_700_000_000.0004, 1_700_000_000.9995, 1_700_000_000.9999996, 1_700_000_001.5, time.time()):
        assert clock(created) == datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")

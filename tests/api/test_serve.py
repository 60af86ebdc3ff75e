"""`python -m service serve` as a user runs it: start, serve, stop on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from service.config import PROJECT_ROOT
from service.openapi import admin_operations

from ..people import USER
from ..processes import Server, base_env, children, live_workers, request, served_env

pytestmark = pytest.mark.process


def test_serves_with_database_url_and_never_logs_the_password(database_url, api_database_url, tmp_path):
    password = urlsplit(api_database_url).password
    assert password
    server = Server(served_env(database_url, api_database_url, WORKERS="1"), tmp_path / "server.log")
    try:
        status, option = request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 2})
        assert status == 201
        status, _ = request(server.port, "POST", f"/ticket_options/{option['id']}/purchases",
                            {"quantity": 3, "user_id": USER})
        assert status == 409
    finally:
        assert server.stop() == 0
    log = server.log()
    assert f"listening on http://127.0.0.1:{server.port}" in log
    assert "database postgresql://ticket_allocation_api:***@" in log
    requests = [line for line in map(json.loads, log.splitlines()) if line["logger"] == "aiohttp.access"]
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [  # one access line per request
        ("POST", "/ticket_options", 201), ("POST", f"/ticket_options/{option['id']}/purchases", 409)
    ]
    assert password not in log
    assert "can write the tables" not in log  # the API role cannot
    warning = next(line for line in log.splitlines() if "ADMIN_TOKEN is not set" in line)
    for operation in admin_operations():  # events and webhooks included: every route that wants the token
        assert operation in warning, (operation, warning)


def test_serving_as_a_role_that_can_write_tables_is_warned_about(database_url, tmp_path):
    server = Server({**base_env(), "DATABASE_URL": database_url, "WORKERS": "1"}, tmp_path / "server.log")
    assert server.stop() == 0
    assert "can write the tables directly" in server.log()


@pytest.mark.slow
def test_embedded_database_starts_stops_and_keeps_its_data(tmp_path):
    pgdata = tmp_path / "pgdata"
    env = {**base_env(), "EMBEDDED_PGDATA": str(pgdata)}
    first = Server(env, tmp_path / "first.log")
    try:
        status, option = request(first.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 5})
        assert status == 201
        status, _ = request(first.port, "POST", f"/ticket_options/{option['id']}/purchases",
                            {"quantity": 2, "user_id": USER})
        assert status == 201
    finally:
        assert first.stop() == 0
    assert "embedded PostgreSQL" in first.log()
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"

    second = Server(env, tmp_path / "second.log")
    try:
        assert request(second.port, "GET", f"/ticket_options/{option['id']}") == (200, {**option, "allocation": 3, "sold": 2, "available": 3})
    finally:
        assert second.stop() == 0
    assert not (pgdata / "postmaster.pid").exists()


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_killed_server_does_not_keep_the_embedded_database_running(tmp_path):
    """A server killed with SIGKILL never takes itself off the wheel's list of joiners
    (.handle_pids.json); the next server must still stop the embedded PostgreSQL on Ctrl-C."""
    pgdata = tmp_path / "pgdata"
    env = {**base_env(), "EMBEDDED_PGDATA": str(pgdata), "WORKERS": "1"}
    killed = Server(env, tmp_path / "killed.log", own_group=True)
    postgres = postmaster_pid(pgdata)
    try:
        killed.process.kill()
        killed.process.wait(timeout=10)  # reaped: gone, not a zombie
        second = Server(env, tmp_path / "second.log", own_group=True)
        assert postmaster_pid(pgdata) == postgres  # joined the server the killed one started
        assert request(second.port, "GET", "/healthz")[0] == 200
        os.killpg(second.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert second.process.wait(timeout=60) == 0
        assert gone_within(postgres, 30), f"the embedded PostgreSQL still runs:\n{second.log()}"
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if running(postgres):  # not left behind for the next tests
            os.kill(postgres, signal.SIGQUIT)


def test_workers_share_the_port_and_stop_together(database_url, api_database_url, tmp_path):
    env = served_env(database_url, api_database_url, WORKERS="2", ADMIN_TOKEN="t0ken")
    server = Server(env, tmp_path / "server.log")
    try:
        workers = live_workers(server, 2)
        status, _ = request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 50})
        assert status == 401
        status, option = request(server.port, "POST", "/ticket_options", {"name": "Gig", "allocation": 50},
                                 headers={"Authorization": "Bearer t0ken"})
        assert status == 201
        for _ in range(20):  # new connections each time, spread over both workers by the kernel
            assert request(server.port, "GET", f"/ticket_options/{option['id']}")[0] == 200
    finally:
        assert server.stop() == 0
    assert "with 2 worker(s)" in server.log()
    assert "ADMIN_TOKEN is not set" not in server.log()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_taken_port_fails_at_once_with_a_clear_message(database_url, api_database_url, tmp_path):
    server = Server(served_env(database_url, api_database_url, WORKERS="1"), tmp_path / "server.log")
    try:
        env = {**served_env(database_url, api_database_url), "PORT": str(server.port)}
        result = subprocess.run([sys.executable, "-m", "service", "serve", "--no-migrate"], cwd=PROJECT_ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        assert server.stop() == 0
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}: Address already in use; set PORT" in result.stderr
    assert "Retrying" not in result.stderr


def test_a_worker_that_cannot_start_stops_the_server_with_its_message(database_url, api_database_url):
    """Not started again and again: gunicorn would, for any exit but its boot-error code."""
    env = served_env(database_url, api_database_url, WORKERS="2", DB_LOCK_TIMEOUT="bogus")
    result = subprocess.run([sys.executable, "-m", "service", "serve", "--no-migrate"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "a database setting of the service is invalid: invalid value for parameter" in result.stderr
    assert "Worker failed to boot" in result.stderr

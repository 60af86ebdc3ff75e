"""Running `python -m service serve` as a real process, as a user would."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from service import embedded
from service.config import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port, method, path, payload=None, headers=None):
    """(status, JSON body) of one request to the server on 127.0.0.1:port."""
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Server:
    def __init__(self, env: dict, log_path, command=(sys.executable, "-m", "service"), cwd=PROJECT_ROOT,
                 own_group: bool = False):
        """`command serve` (the checkout's code unless told otherwise), listening on a free port;
        own_group: in a process group (session) of its own, as a shell runs a command, so that
        signals can go to its whole group as Ctrl-C sends them."""
        self.port = free_port()
        self.log_path = log_path
        env = {**env, "PORT": str(self.port)}
        self.process = subprocess.Popen(
            [*command, "serve"], cwd=cwd, env=env,
            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), start_new_session=own_group,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        pytest.fail(f"server did not listen within 90 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def base_env() -> dict:
    unset = ("DATABASE_URL", "MIGRATE_DATABASE_URL", "ADMIN_DATABASE_URL", "PSQL_DATABASE_URL", "EMBEDDED_PGDATA", "PORT",
             "HOST", "WORKERS", "ADMIN_TOKEN", "API_TOKENS", "BODY_READ_TIMEOUT_MS", "SHUTDOWN_TIMEOUT_MS", "LOG_FORMAT",
             "CACHE_CONTROL")
    return {k: v for k, v in os.environ.items() if k not in unset}


def admin_url_of(api_database_url: str) -> str:
    """The admin role's URL of the API role's database (the tests give both one password)."""
    api = urlsplit(api_database_url)
    return urlunsplit(api._replace(netloc=api.netloc.replace(embedded.API_ROLE, embedded.ADMIN_ROLE, 1)))


def served_env(database_url, api_database_url, **extra) -> dict:
    """Serve as the API role, run admin calls as the admin role, migrate as the owner: the
    least-privilege setup. (The admin role has the API role's password in the tests.)"""
    return {
        **base_env(), "DATABASE_URL": api_database_url, "ADMIN_DATABASE_URL": admin_url_of(api_database_url),
        "MIGRATE_DATABASE_URL": database_url, **extra,
    }


def children(pid: int) -> list[int]:
    """The pids of `pid`'s live child processes (a server's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":  # a zombie is a worker that died, not yet reaped
            found.append(int(stat.parent.name))
    return found


def live_workers(server: Server, count: int) -> list[int]:
    """The server's worker pids, once there are `count` of them serving (bounded wait)."""
    for _ in range(100):
        workers = children(server.process.pid)
        if len(workers) == count and request(server.port, "GET", "/healthz")[0] == 200:
            return workers
        time.sleep(0.1)
    pytest.fail(f"not {count} workers: {workers}\n{server.log()}")

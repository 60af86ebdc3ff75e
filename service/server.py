"""Running the HTTP server: WORKERS processes sharing the port.

The parent binds one SO_REUSEPORT socket per worker (so a taken port fails at
once, with a clear message), forks the workers, and forwards SIGTERM/SIGINT to
them; each worker serves with its own event loop (uvloop), connection pool,
purchase coalescing and metrics. If a worker dies, the others are stopped too,
so that a supervisor sees the failure and restarts the whole service.
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket

import uvloop
from aiohttp import web

from .app import create_app
from .config import Settings, redact
from .logs import AccessLogger

log = logging.getLogger("service")


def listening_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {error.strerror}; set PORT (or HOST) to a free one") from None
    sock.listen(1024)
    return sock


def run_worker(sock: socket.socket, database_url: str, admin_database_url: str, settings: Settings, worker: str) -> None:
    app = create_app(
        database_url, admin_database_url=admin_database_url, pool_size=settings.pool_size, pool_timeout=settings.pool_timeout, database_settings=settings.database_settings,
        admin_token=settings.admin_token, worker=worker, api_tokens=settings.api_tokens,
        body_read_timeout=settings.body_read_timeout,
    )
    web.run_app(
        app, sock=sock, print=None, access_log_class=AccessLogger, loop=uvloop.new_event_loop(),
        shutdown_timeout=settings.shutdown_timeout,
    )


def serve(settings: Settings, database_url: str, admin_database_url: str, source: str) -> int:
    sockets = [listening_socket(settings.host, settings.port) for _ in range(settings.workers)]
    log.info(
        "ticket-allocation listening on http://%s:%s with %d worker(s), database %s (%s); Ctrl-C stops it",
        settings.host, settings.port, settings.workers, redact(database_url), source,
    )
    if settings.admin_token is None:
        log.warning(
            "ADMIN_TOKEN is not set: anyone who can reach this server can create ticket options and cancel "
            "purchases. Set ADMIN_TOKEN to require Authorization: Bearer <token> on those routes."
        )
    if not settings.api_tokens:
        log.warning(
            "API_TOKENS is not set: anyone who can reach this server can buy tickets and list every buyer's "
            "purchases. Set API_TOKENS to require Authorization: Bearer <token> on the API routes."
        )
    if settings.workers == 1:
        run_worker(sockets[0], database_url, admin_database_url, settings, "1")
        log.info("ticket-allocation stopped")
        return 0

    fork = multiprocessing.get_context("fork")
    workers = [
        fork.Process(target=run_worker, args=(sock, database_url, admin_database_url, settings, str(n)), name=f"worker-{n}")
        for n, sock in enumerate(sockets, 1)
    ]
    stopping = False

    def stop(signum=signal.SIGTERM, _frame=None):
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signum)

    for worker in workers:
        worker.start()
    for sock in sockets:
        sock.close()  # each worker holds its own
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    running = list(workers)
    while running:
        for sentinel in multiprocessing.connection.wait([w.sentinel for w in running]):
            worker = next(w for w in running if w.sentinel == sentinel)
            worker.join()
            running.remove(worker)
            if not stopping:
                log.error("%s exited unexpectedly (code %s); stopping the others", worker.name, worker.exitcode)
                stop()
    failed = [w for w in workers if w.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    log.info("ticket-allocation stopped")
    return 1 if failed or not stopping else 0

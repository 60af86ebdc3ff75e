"""Running the HTTP server: gunicorn supervising WORKERS aiohttp workers.

This process is gunicorn's arbiter: it binds HOST:PORT, forks the workers
(aiohttp's GunicornUVLoopWebWorker: each serves with its own uvloop event
loop, connection pool and purchase coalescing) and replaces a worker that
dies, while the others keep serving. SIGTERM or Ctrl-C stops it: the workers
finish the requests in flight (within SHUTDOWN_TIMEOUT_MS), then exit.

Metrics use prometheus_client's multiprocess mode: every worker writes its
values to files in a folder this process creates empty at start and removes
at exit, and /metrics, whichever worker answers it, sums them all.
"""

import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile

from aiohttp import web
from aiohttp.worker import GunicornUVLoopWebWorker
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from .config import Settings, redact
from .openapi import admin_operations
from .logs import AccessLogger

log = logging.getLogger("service")

# The arbiter kills a worker still running this long after the worker's own shutdown window
# (SHUTDOWN_TIMEOUT_MS) should have ended: later, so that it never cuts one short.
GRACEFUL_MARGIN_SECONDS = 5


class Worker(GunicornUVLoopWebWorker):
    """aiohttp's uvloop worker, except that one which cannot start (a SystemExit with a message,
    e.g. an invalid database setting) stops the server with that message: gunicorn would
    otherwise start it again and again, as it only halts on its own boot-error exit code."""

    def run(self) -> None:
        try:
            super().run()
        except SystemExit as exit:
            if self.booted or exit.code in (None, 0):
                raise
            log.error("%s", exit.code)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class Logger(glogging.Logger):
    """gunicorn's own lines (workers booting, a worker killed) through the service's
    handlers, in LOG_FORMAT, instead of gunicorn's format."""

    def setup(self, cfg) -> None:
        for logger in (self.error_log, self.access_log):
            logger.handlers.clear()
            logger.propagate = True
        self.error_log.setLevel(logging.INFO)


class Application(BaseApplication):
    """gunicorn configured from Settings, serving service.app.create_app."""

    def __init__(self, settings: Settings, source: str, create_app):
        self.settings = settings  # its database URLs resolved (service/__main__.py)
        self.source = source  # where settings.database_url comes from, for the start line
        self.create_app = create_app  # service.app.create_app, imported by serve() at the right time
        # The worker's `worker` metrics label: its place in the order gunicorn started them (1, 2, ...; a
        # replacement gets the next number), set in each worker after the fork.
        self.worker_number = 0
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": [f"[{self.settings.host}]:{self.settings.port}" if ":" in self.settings.host
                     else f"{self.settings.host}:{self.settings.port}"],
            "workers": self.settings.workers,
            "worker_class": Worker,
            "graceful_timeout": math.ceil(self.settings.shutdown_timeout) + GRACEFUL_MARGIN_SECONDS,
            "logger_class": Logger,
            "proc_name": "ticket-allocation",
            # gunicorn's runtime-control socket (in ~/.gunicorn): nothing here uses it.
            "control_socket_disable": True,
            "when_ready": self.when_ready,
            "post_fork": self.post_fork,
            "child_exit": child_exit,
        }
        for name, value in options.items():
            self.cfg.set(name, value)

    def when_ready(self, arbiter) -> None:
        """The port is bound (the workers start next; connections wait for them): say so."""
        settings = self.settings
        log.info(
            "ticket-allocation listening on http://%s:%s with %d worker(s), database %s (%s); Ctrl-C stops it",
            settings.host, settings.port, settings.workers, redact(settings.database_url), self.source,
        )

    def post_fork(self, arbiter, worker) -> None:
        # Until the worker installs its own handlers, the arbiter's (inherited with the fork) would
        # swallow a SIGTERM sent while it boots, and the worker would serve on until killed.
        for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(stop_signal, signal.SIG_DFL)
        self.worker_number = worker.age

    def load(self):
        """What each worker serves: aiohttp's worker awaits it for the runner."""
        return self.runner

    async def runner(self) -> web.AppRunner:
        app = self.create_app(self.settings, worker=str(self.worker_number))
        return web.AppRunner(app, access_log_class=AccessLogger, shutdown_timeout=self.settings.shutdown_timeout)


def child_exit(arbiter, worker) -> None:
    """In the arbiter, after a worker exited: its gauges leave /metrics (its counters stay, summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def check_port_is_free(host: str, port: int) -> None:
    """Fail at once with a clear message, rather than after gunicorn's five one-second retries."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            raise SystemExit(
                f"cannot listen on {host}:{port}: {error.strerror}; set PORT (or HOST) to a free one"
            ) from None


def metrics_folder() -> str:
    """A new, empty folder for prometheus_client's multiprocess files, named in the environment.

    The library chooses multiprocess mode when first imported, so this must come
    before that import (serve() imports service.app after it)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess folder was set")
    folder = tempfile.mkdtemp(prefix="ticket-allocation-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def serve(settings: Settings, source: str) -> int:
    """Serves until SIGTERM or Ctrl-C, with `settings` whose database URLs are resolved; `source`:
    where they come from (for the logs)."""
    check_port_is_free(settings.host, settings.port)
    if settings.admin_token is None:
        log.warning(
            "ADMIN_TOKEN is not set: anyone who can reach this server can call the admin routes (%s). Set "
            "ADMIN_TOKEN to require Authorization: Bearer <token> on them.", ", ".join(admin_operations())
        )
    if not settings.api_tokens:
        log.warning(
            "API_TOKENS is not set: anyone who can reach this server can buy tickets and list every buyer's "
            "purchases. Set API_TOKENS to require Authorization: Bearer <token> on the API routes."
        )
    folder = metrics_folder()
    # After the metrics folder is named, and before the fork: a worker, a replacement too, starts
    # with the application's modules already loaded.
    from .app import create_app

    arbiter = os.getpid()
    try:
        Application(settings, source, create_app).run()
        exit_code = 0
    except SystemExit as exit:
        if os.getpid() != arbiter:
            raise  # a worker leaving (gunicorn exits them this way): not the server stopping
        exit_code = exit.code or 0
    finally:
        if os.getpid() == arbiter:
            shutil.rmtree(folder, ignore_errors=True)
    log.info("ticket-allocation stopped")
    return exit_code

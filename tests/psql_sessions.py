"""What an unfriendly psql user does with the psql login: a transaction kept busy (never idle, so
idle_in_transaction_session_timeout never fires) to stall an option's sales or freeze the feed."""

import asyncio
import time

import asyncpg

STEP = 0.3  # seconds between the stalling session's statements


class Stall:
    """`opening` statements in one transaction, then `SELECT 1` every STEP until the session is
    ended (bounded: 60 s). `began` is when its transaction began, `ended_after` how long it lasted,
    `pid` its backend."""

    def __init__(self, url: str, *opening: str):
        self.url, self.opening = url, opening
        self.ended: BaseException | None = None
        self.ended_after: float | None = None
        self.results: list = []

    async def __aenter__(self):
        self.conn = await asyncpg.connect(self.url)
        self.pid = self.conn.get_server_pid()
        await self.conn.execute("BEGIN")
        self.began = time.monotonic()
        for statement in self.opening:
            self.results.append(await self.conn.fetchval(statement))
        self.task = asyncio.create_task(self._keep_busy())
        return self

    async def _keep_busy(self):
        try:
            for _ in range(int(60 / STEP)):
                await asyncio.sleep(STEP)
                await self.conn.execute("SELECT 1")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            self.ended = error
            self.ended_after = time.monotonic() - self.began

    async def wait_ended(self, timeout: float) -> None:
        """Returns once the session was ended, or after `timeout` seconds."""
        await asyncio.wait({self.task}, timeout=timeout)

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.conn.terminate()


def lift_transaction_timeout(has_transaction_timeout: bool) -> tuple[str, ...]:
    """What a psql user runs to lift PostgreSQL 17's transaction_timeout once it holds what it wanted
    (the functions check it when called, not after); nothing to lift on 15 and 16."""
    return ("SET transaction_timeout = 0",) if has_transaction_timeout else ()

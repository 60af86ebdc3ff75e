"""SQLSTATE class 53 (insufficient resources) is 'retry shortly' (503 + Retry-After), not a 500."""

import asyncpg
import pytest

from service.errors import DATABASE_UNAVAILABLE, from_sqlstate, read_problems


async def test_out_of_shared_memory_is_503_with_retry_after(conn):
    # A transaction holding more locks than the shared lock table has room
    # for: what a batch of thousands of keyed requests would do (one advisory
    # lock per key), which the coalescer's MAX_BATCH_KEYS prevents.
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.execute("SELECT count(pg_advisory_xact_lock(i)) FROM generate_series(1, 1000000) AS i")
    assert raised.value.sqlstate == "53200"
    problems = await read_problems(conn)
    problem = from_sqlstate(problems, raised.value.sqlstate, str(raised.value))
    assert problem.type is DATABASE_UNAVAILABLE
    response = problem.response(problems)
    assert response.status == 503 and response.headers["Retry-After"] == "1"

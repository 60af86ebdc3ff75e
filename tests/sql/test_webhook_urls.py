"""The webhook URL rule of create_webhook (webhook_url_problem, migrations/0014_webhook_fairness.sql):
psql callers get it as HTTP clients do; a URL's addresses are checked by the service (tests/api/test_webhook_destinations.py)."""

import asyncpg
import pytest

from ..api.test_webhook_destinations import UNPARSEABLE, WITH_CREDENTIALS


@pytest.fixture
async def admin_conn(admin_database_url):
    """As the admin role, as psql callers of the webhook functions are."""
    connection = await asyncpg.connect(admin_database_url)
    yield connection
    await connection.close()


async def refusal(conn, url: str) -> asyncpg.PostgresError:
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchval("SELECT id FROM api.create_webhook($1)", url)
    assert raised.value.sqlstate == "TA001" and raised.value.column_name == "url", (url, raised.value)
    return raised.value


async def test_urls_of_an_unclear_shape_are_refused(admin_conn):
    for url in UNPARSEABLE + ["http://example.com/" + "x" * 2000, "http://example.com/a b", "http://ex\\ample.com/"]:
        await refusal(admin_conn, url)
    for url in WITH_CREDENTIALS:
        assert "credentials" in (await refusal(admin_conn, url)).message
    assert await admin_conn.fetchval("SELECT count(*) FROM api.list_webhooks()") == 0


async def test_well_formed_urls_are_accepted_as_written(admin_conn):
    for url in ("https://example.com/hook", "HTTP://Example.COM:8080/a/b?c=d&e=%2F#f", "https://xn--exmple-cua.com./",
                "http://8.8.8.8/", "http://[2606:4700:4700::1111]:443/", "http://[::ffff:8.8.8.8]/",
                "https://" + "a" * 63 + ".com/", "http://10.0.0.1/"):  # addresses: the deliverer's to refuse
        row = await admin_conn.fetchrow("SELECT * FROM api.create_webhook($1)", url)
        assert row["url"] == url


async def test_the_rule_backs_the_table(conn):
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO webhooks (url, cursor_xid) VALUES ('http://user:pw@example.com/', '0')")

"""Operations routes: /healthz, /readyz and /metrics."""

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.keys import DB_POOL

from ..conftest import owner_url
from ..people import USER

PURCHASES_ROUTE = "/ticket_options/{id}/purchases"


@pytest.fixture
async def unreachable_database(client, server_url, database_name):
    """The client's database refuses new connections, and its pool must make new ones."""
    # From another database: a session cannot close its own database.
    conn = await asyncpg.connect(owner_url(server_url, "postgres"))
    try:
        await conn.execute(f'ALTER DATABASE "{database_name}" ALLOW_CONNECTIONS false')
    finally:
        await conn.close()
    await client.app[DB_POOL].expire_connections()


async def test_healthz_answers_without_the_database(client, unreachable_database):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_when_migrated(client):
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready"}


async def test_readyz_lists_pending_migrations(client, conn):
    await conn.execute(
        "DELETE FROM _yoyo_migration WHERE migration_id IN ('0002_purchases_as_resources', '0003_purchase_batches')"
    )
    response = await client.get("/readyz")
    assert response.status == 503
    problem = await response.json()
    assert problem["type"] == "/problems/migrations-pending"
    assert problem["detail"].startswith("2 migration(s) pending: 0002_purchases_as_resources, 0003_purchase_batches")


async def test_readyz_when_the_database_is_unreachable(client, unreachable_database, caplog):
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.headers["Retry-After"]
    problem = await response.json()
    assert problem["type"] == "/problems/database-unavailable"
    # The database's own words go to the log, not to whoever can reach /readyz.
    assert problem["detail"] == "The database is unreachable."
    assert "not currently accepting connections" in caplog.text


async def test_metrics_count_requests_by_route_purchases_and_refusals(client):
    before = await scrape(client)
    response = await client.post("/ticket_options", json={"name": "Gig", "allocation": 10, "max_per_user": 4})
    option_id = (await response.json())["id"]
    purchases = f"/ticket_options/{option_id}/purchases"
    assert (await client.post(purchases, json={"quantity": 3, "user_id": USER})).status == 201
    assert (await client.post(purchases, json={"quantity": 2, "user_id": USER})).status == 409  # over max_per_user
    assert (await client.post(purchases, json={"quantity": 11, "user_id": USER})).status == 409  # too many
    assert (await client.get(f"/ticket_options/{option_id}")).status == 200
    assert (await client.get("/no/such/route")).status == 404
    after = await scrape(client)

    def delta(name, **labels):
        return after.get((name, frozenset(labels.items())), 0) - before.get((name, frozenset(labels.items())), 0)

    worker = {"worker": "1"}
    assert delta("ticket_allocation_http_requests_total", method="POST", route=PURCHASES_ROUTE, status="201", **worker) == 1
    assert delta("ticket_allocation_http_requests_total", method="POST", route=PURCHASES_ROUTE, status="409", **worker) == 2
    assert delta("ticket_allocation_http_requests_total", method="GET", route="/ticket_options/{id}", status="200", **worker) == 1
    assert delta("ticket_allocation_http_requests_total", method="GET", route="unmatched", status="404", **worker) == 1
    assert delta(
        "ticket_allocation_http_request_duration_seconds_count", method="POST", route=PURCHASES_ROUTE, status="409", **worker
    ) == 2
    assert delta("ticket_allocation_purchases_total", **worker) == 1
    assert delta("ticket_allocation_tickets_sold_total", **worker) == 3
    assert delta("ticket_allocation_purchases_refused_total", reason="per-user-limit-exceeded", **worker) == 1
    assert delta("ticket_allocation_purchases_refused_total", reason="insufficient-tickets", **worker) == 1
    assert after[("ticket_allocation_db_pool_connections", frozenset(worker.items()))] >= 1
    assert after[("ticket_allocation_db_pool_connections_in_use", frozenset(worker.items()))] == 0
    # Route templates only: an id in a label would make a series per option.
    assert not any(option_id in str(labels) for _, labels in after)


async def test_metrics_content_type(client):
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def scrape(client) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from GET /metrics."""
    response = await client.get("/metrics")
    assert response.status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


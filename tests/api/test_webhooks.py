"""Webhooks: real receivers on 127.0.0.1, signed deliveries checked with the standardwebhooks verifier."""

import asyncio
import contextlib
import ipaddress
import json
import statistics
import time
import uuid
from datetime import datetime

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from service.app import create_app
from service.config import WebhookSettings

from ..apps import app_settings
from ..polling import wait_until
from .helpers import assert_problem, buy, create_option

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
WAIT_SECONDS = 20  # every wait below is bounded by this


@pytest.fixture
def webhook_settings():
    return WebhookSettings(allowed_networks=LOOPBACK, timeout=1.0, concurrency=4, poll_interval=0.05)


@pytest.fixture(autouse=True)
async def fast_retries(conn):
    await conn.execute("UPDATE settings SET webhook_retry_base = '50 milliseconds', webhook_retry_max = '200 milliseconds'")


class Receiver:
    """An HTTP receiver that answers each request with the next status of `statuses` (then 200)."""

    def __init__(self, statuses=(), hang: asyncio.Event | None = None):
        self.statuses = list(statuses)
        self.hang = hang
        self.requests: list[tuple[dict, str, int]] = []
        self.arrived_at: dict[int, float] = {}  # event id: when its request arrived (time.time())
        self.arrived = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.arrived_at.setdefault(json.loads(body)["id"], time.time())
        status = self.statuses.pop(0) if self.statuses else 200
        if self.hang is not None:
            await self.hang.wait()
        async with self.arrived:
            self.requests.append((dict(request.headers), body, status))
            self.arrived.notify_all()
        return web.Response(status=status)

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.requests) >= count), WAIT_SECONDS)


async def start_receiver(aiohttp_server, receiver: Receiver):
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}/hook"


def same_resource(event_data: dict, answered: dict) -> bool:
    """Equal, timestamps compared as instants (PostgreSQL drops trailing zeros of the microseconds)."""
    def instants(resource):
        return {name: datetime.fromisoformat(value) if name.endswith("_at") and value else value
                for name, value in resource.items()}
    return instants(event_data) == instants(answered)


async def subscribe(client, url, **extra):
    response = await client.post("/webhooks", json={"url": url, **extra})
    assert response.status == 201, await response.text()
    return await response.json()


async def attempts(client, hook) -> list[dict]:
    """The subscription's delivery attempts, newest first, answered or in flight."""
    return (await (await client.get(f"/webhooks/{hook['id']}/deliveries")).json())["deliveries"]


async def recorded_attempts(client, hook, count: int) -> list[dict] | None:
    """The subscription's attempts when there are at least `count`, all answered; else None."""
    deliveries = await attempts(client, hook)
    return deliveries if len(deliveries) >= count and all(d["outcome"] for d in deliveries) else None


async def test_deliveries_are_signed_and_in_feed_order(client, aiohttp_server):
    receiver = Receiver()
    hook = await subscribe(client, await start_receiver(aiohttp_server, receiver))
    assert hook["secret"].startswith("whsec_") and hook["types"] is None and hook["enabled"] is True
    option = await create_option(client, allocation=2)
    for _ in range(2):
        assert (await buy(client, option["id"])).status == 201
    await receiver.wait_for(4)
    verifier = Webhook(hook["secret"])
    delivered = [verifier.verify(body, headers) for headers, body, _ in receiver.requests]
    assert [event["type"] for event in delivered] == [
        "ticket_option.created", "purchase.created", "purchase.created", "ticket_option.sold_out"]
    assert delivered[0]["data"]["allocation"] == 2 and delivered[0]["data"]["id"] == option["id"]
    assert [headers["webhook-id"] for headers, _, _ in receiver.requests] == [str(e["id"]) for e in delivered]
    # The feed says the same, and a GET never shows the secret again.
    feed = await (await client.get("/events")).json()
    assert [event["id"] for event in feed["events"]] == [event["id"] for event in delivered]
    assert "secret" not in await (await client.get(f"/webhooks/{hook['id']}")).json()
    delivered_line = 'ticket_allocation_webhook_deliveries_total{outcome="delivered",worker="1"} 4.0'

    async def counted():  # once the answer is recorded, just after the receiver saw it
        metrics = await (await client.get("/metrics")).text()
        return metrics if delivered_line in metrics else None
    metrics = await wait_until(counted, "the 4 deliveries counted in the metrics", WAIT_SECONDS)
    assert "ticket_allocation_events_written{" in metrics


async def test_a_tampered_body_fails_verification(client, aiohttp_server):
    receiver = Receiver()
    hook = await subscribe(client, await start_receiver(aiohttp_server, receiver))
    await create_option(client)
    await receiver.wait_for(1)
    headers, body, _ = receiver.requests[0]
    with pytest.raises(Exception):
        Webhook(hook["secret"]).verify(body.replace("Gig", "Gag"), headers)


async def test_a_failed_delivery_is_retried_with_the_same_id_and_holds_back_later_events(client, aiohttp_server):
    receiver = Receiver(statuses=[500])
    hook = await subscribe(client, await start_receiver(aiohttp_server, receiver))
    await create_option(client)
    await create_option(client)
    await receiver.wait_for(3)
    (first, _, s1), (retry, _, s2), (second, _, s3) = receiver.requests[:3]
    assert (s1, s2, s3) == (500, 200, 200)
    assert first["webhook-id"] == retry["webhook-id"] != second["webhook-id"]
    deliveries = await wait_until(lambda: recorded_attempts(client, hook, 3),
                                  "the 3 answers recorded", WAIT_SECONDS)  # the worker records each right after
    assert [(d["attempt"], d["status_code"], d["outcome"]) for d in reversed(deliveries)] == [
        (1, 500, "failed"), (2, 200, "delivered"), (1, 200, "delivered")]


async def test_a_410_disables_the_subscription(client, aiohttp_server):
    receiver = Receiver(statuses=[410])
    hook = await subscribe(client, await start_receiver(aiohttp_server, receiver))
    # A witness subscription to every event: once the next event has reached it, the deliverer has
    # claimed that event's attempts, and a disabled subscription still due would have had its attempt
    # in the same claim or an earlier one (claims take the due subscriptions, the longest due first).
    witness = Receiver()
    await subscribe(client, await start_receiver(aiohttp_server, witness))
    await create_option(client)
    await receiver.wait_for(1)

    async def disabled():
        state = await (await client.get(f"/webhooks/{hook['id']}")).json()
        return state if not state["enabled"] else None
    state = await wait_until(disabled, "the subscription to be disabled", WAIT_SECONDS)
    assert "410" in state["disabled_reason"]
    await create_option(client)
    await witness.wait_for(2)
    assert len(await attempts(client, hook)) == 1  # none claimed for it since, answered or in flight
    assert len(receiver.requests) == 1


async def test_a_slow_subscription_does_not_hold_back_another(client, aiohttp_server):
    stuck = Receiver(statuses=[500] * 1000)
    fine = Receiver()
    await subscribe(client, await start_receiver(aiohttp_server, stuck))
    await subscribe(client, await start_receiver(aiohttp_server, fine))
    await create_option(client)
    await create_option(client)
    await fine.wait_for(2)
    await stuck.wait_for(1)
    assert {json.loads(body)["id"] for _, body, _ in stuck.requests} == {json.loads(fine.requests[0][1])["id"]}


async def start_hanging_receiver() -> tuple[str, asyncio.Server]:
    """A receiver that accepts the connection, reads the request and never answers."""
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", server


# Deliveries hang for 5 s (the timeout) and are retried at once (fast_retries): 8 of them want
# every slot all the time, twice the default WEBHOOK_CONCURRENCY.
HANGING_RECEIVERS = 8
FAIRNESS_SETTINGS = WebhookSettings(allowed_networks=LOOPBACK, timeout=5.0, concurrency=4, poll_interval=0.1)
LAG_BOUND_SECONDS = 1.0


@pytest.mark.parametrize("webhook_settings", [FAIRNESS_SETTINGS])
async def test_receivers_that_never_answer_do_not_delay_a_healthy_one(client, aiohttp_server, webhook_settings):
    """The healthy subscription's lag, from each event's occurred_at (its transaction's start, so
    before its commit: an upper bound of commit-to-arrival) to its arrival, stays under a second."""
    hanging = [await start_hanging_receiver() for _ in range(HANGING_RECEIVERS)]
    healthy = Receiver()
    try:
        for url, _ in hanging:
            await subscribe(client, url)
        await subscribe(client, await start_receiver(aiohttp_server, healthy))
        events = 0
        deadline = time.monotonic() + 2.5 * FAIRNESS_SETTINGS.timeout  # two rounds of hanging attempts and more
        while time.monotonic() < deadline:
            await create_option(client)
            events += 1
            await asyncio.sleep(0.25)
        with contextlib.suppress(asyncio.TimeoutError):  # what has not arrived by then counts as late
            await healthy.wait_for(events)
        feed = (await (await client.get("/events?limit=1000")).json())["events"]
        assert len(feed) == events
        lags = [healthy.arrived_at.get(event["id"], time.time()) - datetime.fromisoformat(event["occurred_at"]).timestamp()
                for event in feed]
        print(f"healthy subscription beside {HANGING_RECEIVERS} hanging ones: {len(healthy.arrived_at)} of {events} events "
              f"arrived, lag median {statistics.median(lags):.3f} s, max {max(lags):.3f} s")
        assert max(lags) < LAG_BOUND_SECONDS, sorted(lags)[-5:]
    finally:
        for _, server in hanging:
            server.close()


async def test_purchases_keep_going_while_a_receiver_hangs(client, aiohttp_server):
    hang = asyncio.Event()
    receiver = Receiver(hang=hang)
    await subscribe(client, await start_receiver(aiohttp_server, receiver))
    option = await create_option(client, allocation=1000)

    responses = await asyncio.gather(*(buy(client, option["id"], user_id=uuid.uuid4()) for _ in range(200)))
    hang.set()
    assert [response.status for response in responses] == [201] * 200


async def test_registration_refuses_other_schemes_and_internal_destinations(client, aiohttp_client, api_database_url,
                                                                            admin_database_url):
    await assert_problem(await client.post("/webhooks", json={"url": "ftp://127.0.0.1/x"}), 422,
                         "/problems/invalid-argument")
    await assert_problem(await client.post("/webhooks", json={"url": "http://127.0.0.1/x", "types": ["nope.nope"]}),
                         422, "/problems/invalid-argument")
    strict = await aiohttp_client(create_app(app_settings(api_database_url, admin_database_url)))
    for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"):
        body = await assert_problem(await strict.post("/webhooks", json={"url": url}), 422)
        assert body["errors"][0]["field"] == "url"


async def test_crud_and_unknown_ids(client):
    hook = await subscribe(client, "http://127.0.0.1:9/hook", types=["purchase.created"], description="crm")
    assert hook["types"] == ["purchase.created"] and hook["description"] == "crm"
    listed = (await (await client.get("/webhooks")).json())["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert (await client.delete(f"/webhooks/{hook['id']}")).status == 204
    await assert_problem(await client.get(f"/webhooks/{hook['id']}"), 404, "/problems/webhook-not-found")
    await assert_problem(await client.delete(f"/webhooks/{hook['id']}"), 404, "/problems/webhook-not-found")


async def test_the_feed_over_http(client):
    empty = await (await client.get("/events")).json()
    assert empty == {"events": [], "next_cursor": "0-0"}
    option = await create_option(client, allocation=1)
    page = await (await client.get("/events?limit=1")).json()
    assert [e["type"] for e in page["events"]] == ["ticket_option.created"]
    assert same_resource(page["events"][0]["data"], option)  # the resource as the API returned it
    purchase = await (await buy(client, option["id"])).json()
    rest = await (await client.get(f"/events?after={page['next_cursor']}&types=purchase.created")).json()
    assert len(rest["events"]) == 1 and same_resource(rest["events"][0]["data"], purchase)
    end = await (await client.get(f"/events?after={rest['next_cursor']}")).json()
    assert [e["type"] for e in end["events"]] == ["ticket_option.sold_out"]
    again = await (await client.get(f"/events?after={end['next_cursor']}")).json()
    assert again == {"events": [], "next_cursor": end["next_cursor"]}
    await assert_problem(await client.get("/events?limit=0"), 422, "/problems/invalid-argument")
    await assert_problem(await client.get("/events?after=bogus"), 422, "/problems/invalid-argument")

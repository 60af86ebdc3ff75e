"""Where webhooks may go: URLs of a clear shape (sql/webhooks.sql), to globally reachable addresses
only (service/destinations.py), checked at registration and again at every delivery."""

import ipaddress

import pytest

from service.app import create_app
from service.destinations import address_allowed
from service.config import WebhookSettings

from ..apps import app_settings

from ..polling import wait_until
from .helpers import assert_problem, create_option
from .test_webhooks import LOOPBACK, Receiver, start_receiver

WAIT_SECONDS = 20

# Not a URL the service can deliver to, whatever WEBHOOK_ALLOWED_NETWORKS says (sql/webhooks.sql).
UNPARSEABLE = [
    "http://127.0.0.1\\@example.com/",  # a backslash: clients disagree on the host
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:0/",
    "http://[::1/",
    "http://:80/",
    "http:///x",
    "https://" + "a" * 64 + ".com/",  # a DNS label over 63 characters
    "https://" + ".".join(["a" * 63] * 4) + ".com/",  # a name over 253 characters
    "http://a..b/",
    "http://-a.example/",
    "http://exa mple.com/",
    "http://exämple.com/",  # IDNA-encode it: xn--exmple-cua.com
    "http://example.com/%zz",
    "http://host:/",
    "http://host:1:2/",
    "http://[1.2.3.4]/",
    "http://[fe80::1%25eth0]/",  # a zone id
    "http://[v1.x]/",
    "http://2130706433/",  # one number: 127.0.0.1 to some clients
    "http://0x7f.1/",
    "http://127.1/",
    "http://0177.0.0.1/",  # octal to some clients
    "http://example.123/",
    "ftp://example.com/",
    "example.com/hook",
]
WITH_CREDENTIALS = ["http://user:pw@93.184.216.34/", "https://user@8.8.8.8/hook", "http://:pw@[2606:4700::1]/"]
# Literals that are not globally reachable (IANA special-purpose registries, multicast, embedded IPv4).
REFUSED_ADDRESSES = [
    "0.0.0.0", "0.1.2.3", "10.1.2.3", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.0.1", "192.0.0.1",
    "192.0.0.9", "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.51.100.1", "203.0.113.1",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "::127.0.0.1", "::8.8.8.8", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1",
    "64:ff9b::a00:1", "64:ff9b:1::808:808", "100::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:2::1", "2001:db8::1", "2001:10::1", "2002:7f00:1::", "2002:a00:1::1", "3fff::1", "5f00::1",
    "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "ff0e::1", "4000::1", "::ffff:224.0.0.1",
]
ACCEPTED_ADDRESSES = [
    "8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
    "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8",
]


def as_url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.fixture
async def strict(aiohttp_client, api_database_url, admin_database_url):
    """The service with no WEBHOOK_ALLOWED_NETWORKS (and no delivery)."""
    return await aiohttp_client(create_app(app_settings(api_database_url, admin_database_url)))


@pytest.fixture
async def loopback(aiohttp_client, api_database_url, admin_database_url):
    """The service with WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8 (and no delivery)."""
    return await aiohttp_client(create_app(app_settings(
        api_database_url, admin_database_url, webhooks=WebhookSettings(allowed_networks=LOOPBACK, enabled=False))))


async def refused_url(client, url: str) -> dict:
    body = await assert_problem(await client.post("/webhooks", json={"url": url}), 422, "/problems/invalid-argument")
    assert [error["field"] for error in body["errors"]] == ["url"], (url, body)
    return body


async def test_unparseable_urls_are_a_422_naming_url(strict, loopback):
    for url in UNPARSEABLE:
        await refused_url(strict, url)
        await refused_url(loopback, url)  # loopback allowed: the shape is refused all the same
    assert (await (await strict.get("/webhooks")).json())["webhooks"] == []


async def test_credentials_in_the_url_are_refused(strict, loopback):
    for client, url in [(strict, url) for url in WITH_CREDENTIALS] + [(loopback, "http://user:pw@127.0.0.1:9/hook")]:
        body = await refused_url(client, url)
        assert "credentials" in body["detail"] and "pw" not in body["detail"], body
    assert (await (await strict.get("/webhooks")).json())["webhooks"] == []


async def test_addresses_that_are_not_globally_reachable_are_refused_at_registration(strict):
    for address in REFUSED_ADDRESSES:
        body = await refused_url(strict, f"http://{as_url_host(address)}:8080/hook")
        assert "not globally reachable" in body["detail"], body
    for address in ACCEPTED_ADDRESSES:
        response = await strict.post("/webhooks", json={"url": f"https://{as_url_host(address)}/hook"})
        assert response.status == 201, (address, await response.text())


async def test_names_resolving_to_internal_addresses_are_refused_at_registration(strict):
    for url in ("http://localhost:9/hook", "http://LOCALHOST/hook"):
        body = await refused_url(strict, url)
        assert "127.0.0.1" in body["detail"] or "::1" in body["detail"], body


def test_the_address_rule():
    for address in REFUSED_ADDRESSES:
        assert not address_allowed(address, ()), address
    for address in ACCEPTED_ADDRESSES:
        assert address_allowed(address, ()), address
    private = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    # WEBHOOK_ALLOWED_NETWORKS lets these through, embedded IPv4 included; nothing else.
    for address in ("10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::1", "fd12::1"):
        assert address_allowed(address, private), address
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "fe80::1", "fc00::1", "169.254.169.254"):
        assert not address_allowed(address, private), address
    assert address_allowed("fe80::1%eth0", (ipaddress.ip_network("fe80::/10"),))


# Delivery re-checks every destination, literal or resolved: a subscription made from psql (whose
# SQL rule checks the shape only) or a name that now resolves elsewhere is never delivered to.
@pytest.fixture
def webhook_settings():
    return WebhookSettings(allowed_networks=(), timeout=1.0, concurrency=4, poll_interval=0.05)


@pytest.fixture(autouse=True)
async def fast_retries(conn):
    await conn.execute("UPDATE settings SET webhook_retry_base = '50 milliseconds', webhook_retry_max = '200 milliseconds'")


async def failed_attempts(conn, hook_id, count: int) -> list[str]:
    async def answered():
        rows = await conn.fetch("SELECT outcome, error FROM webhook_attempts WHERE webhook_id = $1 AND outcome IS NOT NULL "
                                "ORDER BY id", hook_id)
        return rows if len(rows) >= count else None
    errors = await wait_until(answered, f"{count} attempts answered", WAIT_SECONDS)
    assert {row["outcome"] for row in errors} == {"failed"}, errors
    return [row["error"] for row in errors]


async def test_delivery_refuses_destinations_that_are_not_allowed(client, aiohttp_server, conn):
    receiver = Receiver()
    url = await start_receiver(aiohttp_server, receiver)  # http://127.0.0.1:<port>/hook: listening
    port = url.split(":")[2].split("/")[0]
    destinations = [url, f"http://localhost:{port}/hook", f"http://[::ffff:127.0.0.1]:{port}/hook",
                    f"http://[64:ff9b::7f00:1]:{port}/hook", f"http://[2002:7f00:1::]:{port}/hook",
                    f"http://[::127.0.0.1]:{port}/hook"]
    # As psql callers may: create_webhook checks the shape, the deliverer the destination.
    hooks = [await conn.fetchval("SELECT id FROM create_webhook($1)", destination) for destination in destinations]
    await create_option(client)
    for hook, destination in zip(hooks, destinations):
        errors = await failed_attempts(conn, hook, 2)
        assert all(error.startswith("DestinationRefused") and "not globally reachable" in error
                   for error in errors), (destination, errors)
    assert receiver.requests == []


async def test_a_url_the_client_cannot_parse_fails_its_attempts_not_the_deliverer(client, conn):
    """A row that breaks today's URL rule (as if left from before it, its constraint dropped here):
    each attempt fails with the reason, and the deliverer goes on (it retries)."""
    await conn.execute("ALTER TABLE webhooks DROP CONSTRAINT webhooks_url_valid")
    broken = await conn.fetchval("INSERT INTO webhooks (url, cursor_xid) VALUES ('http://127.0.0.1:99999/', "
                                 "pg_snapshot_xmin(pg_current_snapshot())) RETURNING id")
    await conn.execute("INSERT INTO webhook_secrets VALUES ($1, 'whsec_AAAA')", broken)
    await create_option(client)
    errors = await failed_attempts(conn, broken, 2)
    assert all(error.startswith("InvalidURL: the URL cannot be parsed") for error in errors), errors

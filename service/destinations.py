"""Where webhooks may be sent: globally reachable addresses, and WEBHOOK_ALLOWED_NETWORKS.

The reference is IANA's special-purpose address registries (IPv4 and IPv6): an address in any of
their blocks is refused (a few blocks there are marked globally reachable, such as anycast for
AS112, AMT, PCP or TURN: no webhook receiver lives there either), and so are multicast and, in
IPv6, everything outside the global unicast space 2000::/3 (the IPv4-compatible ::a.b.c.d,
site-local fec0::/10, unassigned space). Python's ipaddress.is_global is not the rule: it misses
NAT64, 6to4, multicast and more. Three IPv6 forms embed an IPv4 address that is where the packets
go (RFC 4291 IPv4-mapped ::ffff:a.b.c.d, RFC 6052 NAT64 64:ff9b::a.b.c.d, RFC 3056 6to4
2002:aabb:ccdd::): they are judged by that IPv4 address.

Checked over HTTP at registration (service/event_routes.py, before create_webhook applies the
URL's shape rule, SQL's: migrations/0014_webhook_fairness.sql) and at every delivery of every
subscription, however registered (service/webhooks.py): IP literals before connecting, names after DNS, by the resolver
the client connects with, so a name that later resolves to an internal address is refused then.
"""

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*blocks: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(block) for block in blocks)


# https://www.iana.org/assignments/iana-ipv4-special-registry, and multicast (RFC 5771).
IPV4_REFUSED = _networks(
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # private use
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local (cloud metadata services live here)
    "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, PCP and TURN anycast...)
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # documentation
    "192.31.196.0/24", "192.175.48.0/24",  # AS112 DNS sinks
    "192.52.193.0/24",  # AMT relays
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
)
# https://www.iana.org/assignments/iana-ipv6-special-registry, within the global unicast space
# (everything outside it is refused: loopback, unspecified, unique-local, link-local, multicast...).
IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
IPV6_REFUSED = _networks(
    "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, AMT, AS112...
    "2001:db8::/32", "3fff::/20",  # documentation
    "2620:4f:8000::/48",  # AS112 DNS sinks
    "5f00::/16",  # SRv6 segment identifiers
)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # 64:ff9b:1::/48 (local use) is outside 2000::/3


def parse_networks(raw: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as error:
        raise SystemExit(f"WEBHOOK_ALLOWED_NETWORKS={raw!r}: {error}") from None


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address sends to (IPv4-mapped, NAT64 well-known prefix, 6to4)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def globally_reachable(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in block for block in IPV4_REFUSED)
    return ip in IPV6_GLOBAL_UNICAST and not any(ip in block for block in IPV6_REFUSED)


def _allowed(ip: Address, allowed: tuple[Network, ...]) -> bool:
    if any(ip in network for network in allowed):
        return True
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        return _allowed(embedded, allowed)
    return globally_reachable(ip)


def address_allowed(address: str, allowed: tuple[Network, ...]) -> bool:
    """Globally reachable (see above), or in the allowed networks (WEBHOOK_ALLOWED_NETWORKS)."""
    return _allowed(ipaddress.ip_address(address.split("%", 1)[0]), allowed)


NOT_ALLOWED = "not globally reachable (IANA special-purpose registries) and not in WEBHOOK_ALLOWED_NETWORKS"


class DestinationRefused(OSError):
    pass


def ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_literal(host: str, allowed: tuple[Network, ...]) -> None:
    """Raise DestinationRefused when `host` is an IP address that is not allowed (names pass)."""
    if ip_literal(host) and not address_allowed(host.strip("[]"), allowed):
        raise DestinationRefused(f"{host} is {NOT_ALLOWED}")


async def check_destination(url: str, allowed: tuple[Network, ...]) -> None:
    """At registration: raise DestinationRefused unless the URL's host is an allowed address, or a name
    every address of which is allowed. A URL the HTTP client cannot parse, or a name it cannot
    encode, is left to the URL rule of sql/webhooks.sql, which refuses it."""
    try:
        host = URL(url).host
    except ValueError:
        return
    if not host:
        return
    if ip_literal(host):
        check_literal(host, allowed)
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except UnicodeError:  # not IDNA-encodable (e.g. a label over 63 characters)
        return
    except socket.gaierror as error:
        raise DestinationRefused(f"{host} does not resolve: {error}") from None
    refused = sorted({info[4][0] for info in infos if not address_allowed(info[4][0], allowed)})
    if refused:
        raise DestinationRefused(f"{host} resolves to {', '.join(refused)}, {NOT_ALLOWED}")


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then keeps only the allowed addresses: checked at each connection, after
    DNS, so a name that later resolves to an internal address is refused then."""

    def __init__(self, allowed: tuple[Network, ...]):
        self.inner = DefaultResolver()
        self.allowed = allowed

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        infos = await self.inner.resolve(host, port, family)
        permitted = [info for info in infos if address_allowed(info["host"], self.allowed)]
        if not permitted:
            addresses = ", ".join(sorted({info["host"] for info in infos}))
            raise DestinationRefused(f"{host} resolves to {addresses}, {NOT_ALLOWED}")
        return permitted

    async def close(self) -> None:
        await self.inner.close()

"""service/failover.py: which URLs mean "find the primary", and how they are split (no database needed)."""

import pytest

from service.failover import hosts_of, pool_options


def test_a_single_host_url_is_used_as_is():
    url = "postgresql://api:pw@db:5432/ticket_allocation"
    assert hosts_of(url) is None
    assert pool_options(url) == {"dsn": url}


def test_a_multi_host_url_becomes_one_url_per_host_keeping_credentials_and_options():
    url = "postgresql://api:p%40ss@10.0.0.1:5433,db2/ticket_allocation?target_session_attrs=read-write&sslmode=require"
    hosts = hosts_of(url)
    assert [host.address for host in hosts] == ["10.0.0.1:5433", "db2:5432"]
    assert [host.url for host in hosts] == [
        "postgresql://api:p%40ss@10.0.0.1:5433/ticket_allocation?sslmode=require",
        "postgresql://api:p%40ss@db2:5432/ticket_allocation?sslmode=require",
    ]
    assert all("p%40ss" not in host.address for host in hosts)  # addresses go to logs and /readyz
    assert "connect" in pool_options(url)


def test_a_multi_host_url_must_ask_for_the_read_write_node():
    with pytest.raises(SystemExit, match="target_session_attrs=read-write"):
        hosts_of("postgresql://api@h1:5432,h2:5432/db?target_session_attrs=any")

"""Supervised workers: one killed under load is replaced while the others keep
serving, and nothing acknowledged is lost; /metrics counts every worker's sales."""

import asyncio
import os
import signal
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..processes import Server, children, live_workers, request, served_env
from .books import purchase_load, reconcile, retry_with_same_keys

pytestmark = [pytest.mark.slow, pytest.mark.process]

INITIAL = 1_000_000


def metric_samples(port: int, name: str) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


async def test_a_killed_worker_is_replaced_and_nothing_acknowledged_is_lost(database_url, api_database_url, tmp_path):
    server = Server(served_env(database_url, api_database_url, WORKERS="2"), tmp_path / "server.log")
    try:
        workers = live_workers(server, 2)
        status, option = request(server.port, "POST", "/ticket_options", {"name": "On sale", "allocation": INITIAL})
        assert status == 201
        load = asyncio.create_task(purchase_load(server.port, option["id"], seconds=6, concurrency=16))
        await asyncio.sleep(2)
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        attempts = await load

        assert any(a.status == 201 and a.answered_at > killed_at + 1 for a in attempts), "no sale after the kill"
        assert {a.status for a in attempts} <= {201, None}, {a.status for a in attempts}  # None: cut off by the kill
        replaced = live_workers(server, 2)
        assert victim not in replaced and workers[1] in replaced, (workers, replaced)

        books = reconcile(database_url, option["id"], INITIAL, attempts)  # every 201 stored; check_consistency()
        counted = sum(s.value for s in metric_samples(server.port, "ticket_allocation_purchases_total"))
        # The killed worker's sales still count; at most its unanswered ones beyond the 201s.
        assert books.acknowledged <= counted <= books.acknowledged + sum(a.status is None for a in attempts)
        pools = {s.labels["worker"] for s in metric_samples(server.port, "ticket_allocation_db_pool_connections")}
        assert len(pools) <= 2, pools  # the dead worker's gauges are gone

        # A purchase that committed while its worker died is found again by its key, not made twice.
        await retry_with_same_keys(server.port, option["id"], attempts, books.committed_without_answer)
        assert reconcile(database_url, option["id"], INITIAL, attempts).committed_without_answer == []
    finally:
        assert server.stop() == 0
    assert f"pid:{victim}" in server.log()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children(server.process.pid))

"""The service's watchdog (service/db.py): a psql user's busy transaction holding an option's lock
is ended once it outlives the bound (settings.max_transaction_timeout, here BOUND), and logged;
meanwhile that option's buyers get 503 with Retry-After, then buy again."""

import logging
import time
import uuid

import pytest

from service import db, embedded

from ..conftest import set_transaction_bound
from ..psql_sessions import Stall, lift_transaction_timeout

BOUND = 2.0
SLACK = 1.5  # the signal's delivery and the stalling session's next statement, on a shared machine


@pytest.fixture(autouse=True)
def bounded(server_url, database_name):
    set_transaction_bound(server_url, database_name, BOUND)  # before the app's pools connect


async def test_the_service_ends_a_psql_stall_logs_it_and_sales_resume(
        client, psql_database_url, has_transaction_timeout, caplog):
    caplog.set_level(logging.WARNING, logger="service.db")
    option = await (await client.post("/ticket_options", json={"name": "Gig", "allocation": 10})).json()
    path = f"/ticket_options/{option['id']}/purchases"
    stall = Stall(psql_database_url, f"SELECT id FROM purchase_tickets('{option['id']}', gen_random_uuid(), 1)",
                  *lift_transaction_timeout(has_transaction_timeout))  # 17+: the watchdog, not the timeout
    async with stall:
        answers = []
        while time.monotonic() - stall.began < BOUND + 10:  # bounded
            response = await client.post(path, json={"user_id": str(uuid.uuid4()), "quantity": 1})
            answers.append(response.status)
            if response.status != 503:
                resumed_after = time.monotonic() - stall.began
                break
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["type"] == "/problems/database-unavailable"
        await stall.wait_ended(timeout=5)
    # Each waited lock_timeout (1 s) on the stalling session and was answered 503, until it was ended.
    assert answers[-1] == 201 and set(answers[:-1]) == {503}, answers
    assert BOUND <= stall.ended_after <= BOUND + db.WATCHDOG_INTERVAL_SECONDS + SLACK, stall.ended_after
    assert resumed_after <= BOUND + db.WATCHDOG_INTERVAL_SECONDS + SLACK
    assert (await (await client.get(f"/ticket_options/{option['id']}")).json())["sold"] == 1
    (line,) = [record.getMessage() for record in caplog.records if "ended the session" in record.getMessage()]
    assert f"ended the session of {embedded.PSQL_ROLE} (pid {stall.pid}," in line
    assert "longer than the bound of 2.0 s" in line and "'SELECT 1'" in line

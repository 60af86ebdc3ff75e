"""The functions through the psql binary, as README.md and docs/sql-api.md show them."""

import subprocess

from service import embedded
from tests.people import USER


def psql(database_url, command):
    return subprocess.run(
        [str(embedded.psql_path()), database_url, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", command],
        capture_output=True, text=True, timeout=30,
    )


def test_create_purchase_and_read_through_psql(database_url):
    created = psql(database_url, "SELECT id FROM create_ticket_option('Gig', 'Main hall', 3)")
    assert created.returncode == 0, created.stderr
    option_id = created.stdout.strip()

    bought = psql(
        database_url,
        f"SELECT quantity, cardinality(ticket_ids) FROM purchase_tickets('{option_id}', '{USER}', 2)",
    )
    assert bought.returncode == 0, bought.stderr
    assert bought.stdout.strip() == "2|2"

    remaining = psql(database_url, f"SELECT remaining FROM get_ticket_option('{option_id}')")
    assert remaining.stdout.strip() == "1"


def test_psql_user_sees_a_clear_error_with_its_sqlstate(database_url):
    option_id = psql(database_url, "SELECT id FROM create_ticket_option('Gig', '', 1)").stdout.strip()
    refused = subprocess.run(
        [str(embedded.psql_path()), database_url, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
         "-c", f"SELECT * FROM purchase_tickets('{option_id}', '{USER}', 2)"],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode != 0
    assert "TA003" in refused.stderr
    assert "not enough tickets left: 2 requested, 1 remaining" in refused.stderr
    assert "remaining: 1" in refused.stderr

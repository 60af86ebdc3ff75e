"""yoyo migrations and the re-applied sql/ functions."""

import subprocess
import threading

import psycopg

from yoyo import get_backend, read_migrations

from service import embedded
from service.migrations import MIGRATIONS_DIR, migrate, yoyo_url

VERSIONED = sorted(p.stem for p in MIGRATIONS_DIR.glob("0*.sql"))


def schema_dump(database_url):
    result = subprocess.run(
        [str(embedded.psql_path().with_name("pg_dump")), "--schema-only", "--no-owner", database_url],
        capture_output=True, text=True, timeout=60, check=True,
    )
    # The dump's header carries a random \restrict key on recent pg_dump; the schema is the rest.
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith("\\"))


def test_first_run_applies_everything_and_second_run_changes_nothing(empty_database_url):
    assert migrate(empty_database_url) == VERSIONED
    first = schema_dump(empty_database_url)
    assert "CREATE FUNCTION api.purchase_tickets" in first

    assert migrate(empty_database_url) == []
    assert schema_dump(empty_database_url) == first


def test_migrate_restores_edited_functions_even_with_nothing_pending(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION api.get_ticket_option(p_id uuid) RETURNS api.ticket_option "
            "LANGUAGE sql AS 'SELECT NULL::api.ticket_option'"
        )
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        source = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = 'api.get_ticket_option'::regproc").fetchone()[0]
    assert "ticket_option_not_found" in source


def test_concurrent_migrations_take_turns(empty_database_url):
    results, errors = [], []

    def run():
        try:
            results.append(migrate(empty_database_url))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [[], [], VERSIONED]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0] == len(VERSIONED)


def test_0002_counts_what_was_sold_before_it(empty_database_url):
    backend = get_backend(yoyo_url(empty_database_url))
    first = read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id == "0001_schema")
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(first))
    backend.connection.close()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        option = conn.execute(
            "INSERT INTO ticket_options (name, allocation) VALUES ('Gig', 7) RETURNING id").fetchone()[0]
        for quantity in (2, 1):
            conn.execute("INSERT INTO purchases (ticket_option_id, user_id, quantity) "
                         "VALUES (%s, gen_random_uuid(), %s)", (option, quantity))

    assert migrate(empty_database_url) == VERSIONED[1:]
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute("SELECT remaining, sold, total FROM ticket_options WHERE id = %s", (option,)).fetchone()
        statuses = conn.execute("SELECT DISTINCT status FROM purchases").fetchall()
    assert row == (7, 3, 10)
    assert statuses == [("active",)]

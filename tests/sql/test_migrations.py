"""yoyo migrations and the re-applied sql/ functions."""

import subprocess
import threading

import psycopg

from service import embedded
from service.migrations import migrate


def schema_dump(database_url):
    result = subprocess.run(
        [str(embedded.psql_path().with_name("pg_dump")), "--schema-only", "--no-owner", database_url],
        capture_output=True, text=True, timeout=60, check=True,
    )
    # The dump's header carries a random \restrict key on recent pg_dump; the schema is the rest.
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith("\\"))


def test_first_run_applies_everything_and_second_run_changes_nothing(empty_database_url):
    assert migrate(empty_database_url) == ["0001_schema"]
    first = schema_dump(empty_database_url)
    assert "CREATE FUNCTION public.purchase_tickets" in first

    assert migrate(empty_database_url) == []
    assert schema_dump(empty_database_url) == first


def test_migrate_restores_edited_functions_even_with_nothing_pending(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION get_ticket_option(p_id uuid) RETURNS ticket_options "
            "LANGUAGE sql AS 'SELECT NULL::ticket_options'"
        )
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        source = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'get_ticket_option'").fetchone()[0]
    assert "TA002" in source


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
    assert sorted(results) == [[], [], ["0001_schema"]]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0] == 1

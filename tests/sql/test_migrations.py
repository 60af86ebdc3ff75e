"""yoyo migrations and the re-applied sql/ functions."""

import re
import subprocess
import threading
from importlib.resources import files

import psycopg
from psycopg.types.json import Jsonb
from yoyo import get_backend, read_migrations

from service import embedded
from service.migrations import MIGRATIONS_DIR, migrate, yoyo_url
from tests.people import USER

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


def functions_in(conn) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT p.pronamespace::regnamespace || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) "
        "|| ')' FROM pg_proc p WHERE p.pronamespace IN ('api'::regnamespace, 'ticket_allocation'::regnamespace)").fetchall()}


def test_a_function_removed_from_sql_does_not_linger_after_migrate(database_url):
    """Functions of api and ticket_allocation that sql/ no longer defines are dropped by the next
    migrate, an old overload of one it still defines included; what the schema depends on (the
    functions of CHECK constraints, from migrations) stays."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = functions_in(conn)
        conn.execute("CREATE FUNCTION api.removed_from_sql() RETURNS integer LANGUAGE sql "
                     "SET search_path = api AS 'SELECT 1'")
        conn.execute("CREATE FUNCTION ticket_allocation.removed_helper(p integer) RETURNS integer LANGUAGE sql "
                     "SET search_path = api AS 'SELECT p'")
        conn.execute("CREATE FUNCTION api.get_ticket_option(p_id uuid, p_gone_argument integer) "
                     "RETURNS api.ticket_option LANGUAGE sql SET search_path = api AS 'SELECT NULL::api.ticket_option'")
        # A rule a CHECK uses: not in sql/, but the schema depends on it.
        conn.execute("CREATE FUNCTION ticket_allocation.stray_rule(p integer) RETURNS boolean LANGUAGE sql "
                     "IMMUTABLE SET search_path = api AS 'SELECT p >= 0'")
        conn.execute("ALTER TABLE ticket_allocation.ticket_options "
                     "ADD CONSTRAINT stray_rule_holds CHECK (ticket_allocation.stray_rule(total))")
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        after = functions_in(conn)
    assert after == before | {"ticket_allocation.stray_rule(p integer)"}
    assert {"ticket_allocation.name_problem(p_name text)", "ticket_allocation.webhook_url_problem(p_url text)"} <= after


def test_the_load_order_lists_every_sql_file_once_privileges_last(database_url):
    """sql/load.sql is the order migrate applies sql/ in (psql can run it too: -f sql/load.sql)."""
    sql_dir = files("service.sql")
    listed = re.findall(r"^\\ir (\S+)$", (sql_dir / "load.sql").read_text(), flags=re.MULTILINE)
    on_disk = sorted(p.name for p in sql_dir.iterdir() if p.name.endswith(".sql") and p.name != "load.sql")
    assert sorted(listed) == on_disk
    assert listed[-1] == "privileges.sql"
    result = subprocess.run(
        [str(embedded.psql_path()), database_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1",
         "-f", str(sql_dir / "load.sql")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


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


def test_0004_keeps_the_keys_remembered_before_it(empty_database_url):
    """Keys remembered before keys had scopes still replay their purchase (and option) after 0004."""
    backend = get_backend(yoyo_url(empty_database_url))
    before = read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id < "0004")
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(before))
    backend.connection.close()
    user = USER
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        option = conn.execute("INSERT INTO ticket_options (name, allocation, sold, total) VALUES ('Gig', 8, 2, 10) "
                              "RETURNING id").fetchone()[0]
        purchase = conn.execute("INSERT INTO purchases (ticket_option_id, user_id, quantity) VALUES (%s, %s, 2) "
                                "RETURNING id", (option, user)).fetchone()[0]
        conn.execute("INSERT INTO tickets (ticket_option_id, purchase_id) SELECT %s, %s FROM generate_series(1, 2)",
                     (option, purchase))
        request = {"purchase_tickets": {"ticket_option_id": str(option), "user_id": user, "quantity": 2}}
        conn.execute("INSERT INTO idempotency_keys (key, request, purchase_id, expires_at) "
                     "VALUES ('order-1', %s, %s, now() + interval '1 hour')", (Jsonb(request), purchase))
        created = {"create_ticket_option": {"name": "Gig", "desc": "", "allocation": 10, "max_per_user": None}}
        conn.execute("INSERT INTO idempotency_keys (key, request, ticket_option_id, expires_at) "
                     "VALUES ('create-1', %s, %s, now() + interval '1 hour')", (Jsonb(created), option))

    assert migrate(empty_database_url) == [m for m in VERSIONED if m >= "0004"]
    with psycopg.connect(empty_database_url) as conn:
        replayed = conn.execute("SELECT id FROM purchase_tickets(%s, %s, 2, 'order-1')", (option, user)).fetchone()[0]
        again = conn.execute("SELECT id FROM create_ticket_option('Gig', '', 10, NULL, 'create-1')").fetchone()[0]
        sold = conn.execute("SELECT sold FROM ticket_options WHERE id = %s", (option,)).fetchone()[0]
    assert (replayed, again, sold) == (purchase, option, 2)


def test_0015_drops_keys_with_a_comma_and_keeps_older_events_readable(empty_database_url):
    """Keys with a comma (two Idempotency-Key headers a proxy joined) go, the others stay, and the
    new CHECK is valid; events written before data_bytes existed are still paged by size."""
    backend = get_backend(yoyo_url(empty_database_url))
    before = read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id < "0015")
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(before))
    backend.connection.close()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("SET search_path = ticket_allocation")
        option = conn.execute("INSERT INTO ticket_options (name, remaining, sold, total) VALUES ('Gig', 10, 0, 10) "
                              "RETURNING id").fetchone()[0]
        for key in ("k-a, k-b", "plain-key"):
            conn.execute("INSERT INTO idempotency_keys (scope, key, request, ticket_option_id, expires_at) "
                         "VALUES ('|ticket_option', %s, '{}', %s, now() + interval '1 hour')", (key, option))
        conn.execute("INSERT INTO events (type, data) SELECT 'ticket_option.created', %s FROM generate_series(1, 3)",
                     (Jsonb({"id": str(option), "name": "x" * 600_000}),))

    assert migrate(empty_database_url) == [m for m in VERSIONED if m >= "0015"]
    with psycopg.connect(empty_database_url) as conn:
        keys = conn.execute("SELECT key FROM ticket_allocation.idempotency_keys").fetchall()
        checks = conn.execute("SELECT conname, convalidated FROM pg_constraint "
                              "WHERE conrelid = 'ticket_allocation.idempotency_keys'::regclass AND contype = 'c' "
                              "AND conname LIKE 'idempotency_keys_key%'").fetchall()
        page = conn.execute("SELECT id FROM api.events_after(NULL, 1000)").fetchall()
        sizes = conn.execute("SELECT data_bytes FROM ticket_allocation.events").fetchall()
    assert keys == [("plain-key",)]
    assert checks == [("idempotency_keys_key_rule", True)]
    assert len(page) == 2  # the second of 600 kB each reaches 1 MiB: measured though data_bytes is null
    assert sizes == [(None,)] * 3


def test_0014_disables_subscriptions_whose_url_breaks_the_new_rule(empty_database_url):
    """Credentials leave every stored URL; subscriptions with credentials or an unclear URL are
    disabled, saying why; the others go on."""
    backend = get_backend(yoyo_url(empty_database_url))
    before = read_migrations(str(MIGRATIONS_DIR)).filter(lambda m: m.id < "0014")
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(before))
    backend.connection.close()
    urls = ["https://user:secret@example.com/hook", "http://127.0.0.1:99999/", "https://example.com/fine"]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        for url in urls:
            conn.execute("INSERT INTO ticket_allocation.webhooks (url, cursor_xid) VALUES (%s, '0')", (url,))

    assert "0014_webhook_fairness" in migrate(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        rows = dict((url, (enabled, reason)) for url, enabled, reason in conn.execute(
            "SELECT url, enabled, disabled_reason FROM ticket_allocation.webhooks").fetchall())
    assert set(rows) == {"https://example.com/hook", "http://127.0.0.1:99999/", "https://example.com/fine"}
    assert rows["https://example.com/hook"][0] is False and "credentials" in rows["https://example.com/hook"][1]
    assert rows["http://127.0.0.1:99999/"][0] is False and "port" in rows["http://127.0.0.1:99999/"][1]
    assert rows["https://example.com/fine"] == (True, None)

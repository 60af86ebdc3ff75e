"""The command line: `check` and `--help`."""

import re
import subprocess
import sys

import pytest

from service import embedded
from service.__main__ import main, psql_url_of
from service.config import PROJECT_ROOT

from .conftest import ROLE_PASSWORD
from .doc_pages import page_with
from .processes import admin_url_of, served_env

COMMANDS = ("serve", "migrate", "psql", "check")
# Every variable the settings read, as config.py names them.
ENV_VARS = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (PROJECT_ROOT / "service" / "config.py").read_text()))


def check(database_url, api_database_url, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "check"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        env=served_env(database_url, api_database_url, **env),
    )


async def test_check_says_consistent_then_names_the_violated_invariant(database_url, api_database_url, conn):
    option_id = await conn.fetchval("SELECT id FROM create_ticket_option('Gig', '', 10)")
    await conn.execute("SELECT purchase_tickets($1, gen_random_uuid(), 2)", option_id)
    result = check(database_url, api_database_url)
    assert (result.returncode, result.stdout) == (0, "consistent\n"), result.stderr

    await conn.execute("ALTER TABLE ticket_options DROP CONSTRAINT ticket_options_total_is_remaining_plus_held_plus_sold")
    await conn.execute("UPDATE ticket_options SET sold = sold + 1")
    result = check(database_url, api_database_url)
    assert result.returncode == 1, result.stderr
    assert f"total_is_remaining_plus_held_plus_sold  ticket option {option_id}: remaining 8 + held 0 + sold 3 <> total 10" in result.stdout
    assert "sold_is_active_purchases" in result.stdout


def service(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        env=env,
    )


async def test_psql_passes_its_arguments_on_and_connects_as_the_psql_role(database_url, api_database_url, conn):
    """By default the psql login, derived from DATABASE_URL (no password: the tests' server trusts),
    never the service's own; --admin and --owner as those roles."""
    option_id = await conn.fetchval("SELECT id FROM create_ticket_option('Gig', '', 10)")
    env = served_env(database_url, api_database_url)
    as_psql = service(env, "psql", "-X", "-At", "-c",
                      f"SELECT current_user, name FROM get_ticket_option('{option_id}')")
    assert (as_psql.returncode, as_psql.stdout) == (0, f"{embedded.PSQL_ROLE}|Gig\n"), as_psql.stderr
    denied = service(env, "psql", "-X", "-c", "SELECT count(*) FROM ticket_allocation.ticket_options")
    assert "permission denied for schema ticket_allocation" in denied.stderr
    as_admin = service(env, "psql", "--admin", "-X", "-At", "-c", "SELECT current_user, count(*) FROM check_consistency()")
    assert (as_admin.returncode, as_admin.stdout) == (0, f"{embedded.ADMIN_ROLE}|0\n"), as_admin.stderr
    as_owner = service(env, "psql", "--owner", "-X", "-At", "-c", "SELECT count(*) FROM ticket_options")
    assert (as_owner.returncode, as_owner.stdout) == (0, "1\n"), as_owner.stderr
    assert service(env, "migrate", "-c", "x").returncode == 2  # only psql takes extra arguments


def test_psql_takes_psql_database_url(database_url, api_database_url):
    """PSQL_DATABASE_URL, when set, is the login psql opens (here: given the admin role's URL, to tell)."""
    env = served_env(database_url, api_database_url, PSQL_DATABASE_URL=admin_url_of(api_database_url))
    result = service(env, "psql", "-X", "-At", "-c", "SELECT current_user")
    assert (result.returncode, result.stdout) == (0, f"{embedded.ADMIN_ROLE}\n"), result.stderr


@pytest.mark.parametrize(("database_url", "psql_url"), [
    ("postgresql://ticket_allocation_api:pw@db:5432/ticket_allocation?sslmode=require",
     "postgresql://ticket_allocation_psql@db:5432/ticket_allocation?sslmode=require"),
    ("postgresql://api:p%40ss@h1:5432,h2:5432/tickets?target_session_attrs=read-write",
     "postgresql://ticket_allocation_psql@h1:5432,h2:5432/tickets?target_session_attrs=read-write"),
    ("postgresql://ticket_allocation_api@db", "postgresql://ticket_allocation_psql@db/ticket_allocation_api"),
])
def test_the_psql_login_is_derived_from_database_url_without_its_password(database_url, psql_url):
    assert psql_url_of(database_url) == psql_url


def test_check_that_cannot_connect_says_so(database_url, api_database_url):
    wrong = api_database_url.replace("/ticket_allocation_test_", "/no_such_database_")
    result = check(database_url, api_database_url, ADMIN_DATABASE_URL=wrong.replace("_api:", "_admin:"))
    assert result.returncode == 2
    assert "could not check" in result.stderr
    assert ROLE_PASSWORD not in result.stderr


def test_help_names_every_command_and_environment_variable(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    help_text = capsys.readouterr().out
    assert {"DATABASE_URL", "LOG_FORMAT", "ADMIN_TOKEN"} <= ENV_VARS
    for word in (*COMMANDS, *ENV_VARS):
        assert re.search(rf"\b{word}\b", help_text), word


def test_readme_configuration_lists_every_environment_variable():
    table = page_with("| variable | default | meaning |").split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    for name in ENV_VARS:
        assert f"`{name}`" in table, name

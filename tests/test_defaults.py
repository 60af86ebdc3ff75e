"""Defaults live in the SQL function signatures; the OpenAPI document only repeats them, and this
test keeps the two equal (the service leaves an omitted argument out, so SQL's default applies)."""

import json
import re
import uuid

import pytest
import yaml

from service.config import PROJECT_ROOT
from tests.sql.helpers import ticket_requests

from .doc_pages import page_with

OPENAPI = yaml.safe_load((PROJECT_ROOT / "service" / "openapi.yaml").read_text())
EVENTS_PAGE = page_with("| type | data | when |")


def openapi_default(location: str, name: str):
    """The documented default of a query parameter (`query`) or a body field (`body`) named `name`."""
    if location == "query":
        for path in OPENAPI["paths"].values():
            for operation in path.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("name") == name and "default" in parameter.get("schema", {}):
                        return parameter["schema"]["default"]
    for schema in OPENAPI["components"]["schemas"].values():
        if name in schema.get("properties", {}) and "default" in schema["properties"][name]:
            return schema["properties"][name]["default"]
    raise AssertionError(f"the OpenAPI document gives no default for {name}")


@pytest.mark.parametrize(("function", "argument", "location", "field"), [
    ("api.create_ticket_option", "p_desc", "body", "desc"),
    ("api.list_purchases_page", "p_limit", "query", "limit"),
])
async def test_the_openapi_defaults_are_the_sql_ones(conn, function, argument, location, field):
    # pg_get_function_arguments: "p_name text, p_desc text DEFAULT ''::text, ..."
    arguments = await conn.fetchval("SELECT pg_get_function_arguments($1::regproc)", function)
    (declared,) = [part for part in arguments.split(", ") if part.split()[0] == argument]
    assert " DEFAULT " in declared, declared
    sql_default = await conn.fetchval(f"SELECT {declared.split(' DEFAULT ', 1)[1]}")
    assert sql_default == openapi_default(location, field)


async def test_the_openapi_max_hold_seconds_default_is_the_column_default(conn):
    # create_ticket_option leaves the column's default standing when the argument is null.
    column_default = await conn.fetchval(
        "SELECT column_default FROM information_schema.columns "
        "WHERE table_schema = 'ticket_allocation' AND table_name = 'ticket_options' AND column_name = 'max_hold_seconds'")
    assert int(column_default) == openapi_default("body", "max_hold_seconds")
    created = await conn.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10)")
    assert created["max_hold_seconds"] == int(column_default)


async def test_the_hold_ttl_default_is_default_hold_ttl_everywhere(conn):
    """SQL says it once (api.default_hold_ttl()): hold_tickets' signature and a batch's null ttl
    take it, no other function spells it, and the OpenAPI document repeats it."""
    ttl = await conn.fetchval("SELECT api.default_hold_ttl()")
    assert ttl.total_seconds() == openapi_default("body", "ttl_seconds")
    option = await conn.fetchrow("SELECT * FROM create_ticket_option('Gig', '', 10, NULL, NULL, NULL, 86400)")
    single = await conn.fetchrow("SELECT * FROM hold_tickets($1, $2, 1)", option["id"], uuid.uuid4())
    (batched,) = await conn.fetch("SELECT (hold).* FROM hold_tickets_batch($1)",
                                  ticket_requests(option["id"], [uuid.uuid4()], [1]))  # its ttl null
    assert single["expires_at"] - single["created_at"] == ttl == batched["expires_at"] - batched["created_at"]
    spelled = await conn.fetch(
        """SELECT p.proname FROM pg_proc p
           WHERE p.pronamespace IN ('api'::regnamespace, 'ticket_allocation'::regnamespace)
             AND p.proname <> 'default_hold_ttl'
             AND (p.prosrc ~* '10 minutes|00:10:00'
                  OR coalesce(pg_get_function_arguments(p.oid), '') ~* '10 minutes|00:10:00')""")
    assert [row["proname"] for row in spelled] == []


def readme_event_types() -> list[str]:
    """The types of the docs' table of events (the rows under its `| type | data | when |` header)."""
    table = EVENTS_PAGE.split("| type | data | when |", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", table, flags=re.MULTILINE)


async def test_the_event_types_are_sqls_and_the_docs_list_them(conn):
    """ticket_allocation.event_types() is the catalogue; the OpenAPI enum and the docs' table repeat it."""
    types = await conn.fetchval("SELECT ticket_allocation.event_types()")
    assert OPENAPI["components"]["schemas"]["Event"]["properties"]["type"]["enum"] == types
    assert sorted(readme_event_types()) == sorted(types)


RESOURCE_OF_EVENT = {"ticket_option": "TicketOption", "purchase": "Purchase", "hold": "Hold"}


def test_the_readme_event_examples_carry_the_resources_fields():
    """Each event the docs show has the data of its resource's schema, field for field."""
    block = EVENTS_PAGE.split("```json\n", 1)[1].split("```", 1)[0]
    events = [json.loads(text) for text in re.split(r"\n(?=\{)", block.strip())]
    assert events
    for event in events:
        schema = OPENAPI["components"]["schemas"][RESOURCE_OF_EVENT[event["type"].split(".")[0]]]
        assert set(event["data"]) == set(schema["properties"]), event["type"]

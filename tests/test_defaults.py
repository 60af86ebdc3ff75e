"""Defaults live in the SQL function signatures; the OpenAPI document only repeats them, and this
test keeps the two equal (the service leaves an omitted argument out, so SQL's default applies)."""

import pytest
import yaml

from service.config import PROJECT_ROOT

OPENAPI = yaml.safe_load((PROJECT_ROOT / "service" / "openapi.yaml").read_text())


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

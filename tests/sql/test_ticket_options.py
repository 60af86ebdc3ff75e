"""create_ticket_option and get_ticket_option, called as psql users would."""

import uuid

import asyncpg
import pytest


async def create(conn, name="Gig", desc="Main hall", allocation=100):
    return await conn.fetchrow("SELECT * FROM create_ticket_option($1, $2, $3)", name, desc, allocation)


async def test_create_returns_the_new_option(conn):
    option = await create(conn, "Summer gig", "Main hall", 250)
    assert option["name"] == "Summer gig"
    assert option["desc"] == "Main hall"
    assert option["remaining"] == 250
    assert isinstance(option["id"], uuid.UUID)
    stored = await conn.fetchrow("SELECT * FROM ticket_options WHERE id = $1", option["id"])
    assert {name: stored[name] for name in option.keys() if name in stored} == {
        name: value for name, value in option.items() if name in stored}
    assert (option["quota_ids"], option["available"]) == ([], 250)  # in no quota: all of it


async def test_an_option_shows_exactly_its_public_fields(conn):
    option = await create(conn)
    assert list(option.keys()) == ["id", "name", "desc", "remaining", "sold", "total", "max_per_user", "created_at", "held",
                                   "max_hold_seconds", "quota_ids", "available"]


async def test_desc_defaults_in_the_signature(conn):
    option = await conn.fetchrow("SELECT * FROM create_ticket_option(p_name => 'Gig', p_allocation => 5)")
    assert (option["desc"], option["total"]) == ("", 5)


async def test_allocation_may_be_zero(conn):
    assert (await create(conn, allocation=0))["remaining"] == 0


@pytest.mark.parametrize(
    ("name", "desc", "allocation", "field"),
    [
        (None, "", 1, "name"),
        ("", "", 1, "name"),
        ("   ", "", 1, "name"),
        ("x" * 201, "", 1, "name"),
        ("Gig", None, 1, "desc"),
        ("Gig", "x" * 2001, 1, "desc"),
        ("Gig", "", -1, "allocation"),
        ("Gig", "", None, "allocation"),
    ],
)
async def test_create_rejects_invalid_arguments_with_TA001(conn, name, desc, allocation, field):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await create(conn, name, desc, allocation)
    assert raised.value.sqlstate == "TA001"
    assert raised.value.column_name == field
    assert raised.value.message.startswith(field)
    assert await conn.fetchval("SELECT count(*) FROM ticket_options") == 0


async def test_longest_name_and_desc_are_accepted(conn):
    option = await create(conn, "n" * 200, "d" * 2000, 1)
    assert len(option["name"]) == 200 and len(option["desc"]) == 2000


async def test_get_returns_the_option(conn):
    created = await create(conn)
    fetched = await conn.fetchrow("SELECT * FROM get_ticket_option($1)", created["id"])
    assert dict(fetched) == dict(created)


async def test_get_unknown_option_raises_TA002(conn):
    missing = uuid.uuid4()
    with pytest.raises(asyncpg.PostgresError) as raised:
        await conn.fetchrow("SELECT * FROM get_ticket_option($1)", missing)
    assert raised.value.sqlstate == "TA002"
    assert str(missing) in raised.value.message


async def test_schema_constraints_back_the_rules(conn):
    # Writing past the functions still cannot store what they would refuse.
    for statement in (
        "INSERT INTO ticket_options (name, remaining, total) VALUES (' ', 1, 1)",
        "INSERT INTO ticket_options (name, remaining, total) VALUES ('Gig', -1, -1)",
        "INSERT INTO ticket_options (name, remaining, total) VALUES (repeat('x', 201), 1, 1)",
        "INSERT INTO ticket_options (name, remaining, total, max_per_user) VALUES ('Gig', 1, 1, 0)",
        "INSERT INTO ticket_options (name, remaining, total) VALUES ('Gig', 1, 2)",
        "INSERT INTO ticket_options (name, remaining, sold, total) VALUES ('Gig', 3, -1, 2)",
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(statement)


# Blank to a reader: whitespace and format characters only, not just ASCII spaces.
BLANK_NAMES = ["\t", "\n\r", "\u00a0", "\u3000", "\u200b", "\u2028", "\ufeff", " \u200b\u00a0 ", "\U000e0020"]
# Control characters, or characters that make a name display as something else.
DECEIVING_NAMES = ["Gig\x07", "Gig\x1b[31m", "\u202eGig", "Gig\u2066x\u2069", "Gig\x85"]


@pytest.mark.parametrize("name", BLANK_NAMES + DECEIVING_NAMES)
async def test_names_that_show_nothing_or_deceive_are_TA001_here_and_in_the_schema(conn, name):
    with pytest.raises(asyncpg.PostgresError) as raised:
        await create(conn, name)
    assert (raised.value.sqlstate, raised.value.column_name) == ("TA001", "name")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO ticket_options (name, remaining, total) VALUES ($1, 1, 1)", name)


@pytest.mark.parametrize("name", ["Gig", "Été à Zürich", "東京ドーム", "👩\u200d👩\u200d👧 family day", "a\u00a0b", "שלום"])
async def test_visible_names_in_any_script_are_accepted(conn, name):
    assert (await create(conn, name))["name"] == name

"""check_consistency(): silent on sound books, names each broken invariant."""

from .helpers import create_option, purchase


async def violations(conn):
    return {(row["invariant"], row["ticket_option_id"]) for row in await conn.fetch("SELECT * FROM check_consistency()")}


async def test_sound_books_have_no_violations(conn):
    option_id = await create_option(conn, 10)
    bought = await purchase(conn, option_id, 3)
    await purchase(conn, option_id, 2)
    await conn.execute("SELECT cancel_purchase($1)", bought["id"])
    assert await violations(conn) == set()


async def test_each_broken_invariant_is_reported(conn):
    option_id = await create_option(conn, 10)
    bought = await purchase(conn, option_id, 3)
    # Break the books behind the functions' back (the owner can; the API role cannot).
    await conn.execute("ALTER TABLE ticket_options DROP CONSTRAINT ticket_options_total_is_remaining_plus_held_plus_sold")
    await conn.execute("ALTER TABLE ticket_options DROP CONSTRAINT ticket_options_remaining_not_negative")
    await conn.execute("UPDATE ticket_options SET remaining = -1, sold = 4")
    await conn.execute("DELETE FROM tickets WHERE id = $1", bought["ticket_ids"][0])
    await conn.execute("UPDATE tickets SET voided_at = now() WHERE id = $1", bought["ticket_ids"][1])
    assert await violations(conn) == {
        ("remaining_not_negative", option_id),
        ("total_is_remaining_plus_held_plus_sold", option_id),
        ("sold_is_active_purchases", option_id),
        ("tickets_match_quantity", option_id),
        ("tickets_void_iff_cancelled", option_id),
    }

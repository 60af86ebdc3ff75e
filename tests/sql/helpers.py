"""Calls to the SQL functions shared by the SQL-level tests."""

import uuid

USER = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")


async def create_option(conn, allocation, max_per_user=None):
    return await conn.fetchval(
        "SELECT id FROM create_ticket_option('Gig', '', $1, $2)", allocation, max_per_user
    )


async def purchase(conn, option_id, quantity, user_id=USER, key=None):
    return await conn.fetchrow(
        "SELECT * FROM purchase_tickets($1, $2, $3, $4)", option_id, user_id, quantity, key
    )


async def option_state(conn, option_id):
    """What the option says, next to what its purchases and tickets add up to."""
    return await conn.fetchrow(
        """SELECT o.remaining, o.sold, o.total,
                  (SELECT coalesce(sum(quantity), 0) FROM purchases
                   WHERE ticket_option_id = o.id AND status = 'active') AS active_quantity,
                  (SELECT count(*) FROM tickets
                   WHERE ticket_option_id = o.id AND voided_at IS NULL) AS valid_tickets
           FROM ticket_options o WHERE o.id = $1""",
        option_id,
    )


def assert_consistent(state, total):
    assert state["remaining"] >= 0
    assert state["total"] == total
    assert state["remaining"] + state["sold"] == total
    assert state["sold"] == state["active_quantity"] == state["valid_tickets"]

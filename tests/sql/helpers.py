"""Calls to the SQL functions shared by the SQL-level tests."""

from tests.people import USER_ID


async def create_option(conn, allocation, max_per_user=None):
    return await conn.fetchval(
        "SELECT id FROM create_ticket_option('Gig', '', $1, $2)", allocation, max_per_user
    )


async def purchase(conn, option_id, quantity, user_id=USER_ID, key=None):
    return await conn.fetchrow(
        "SELECT * FROM purchase_tickets($1, $2, $3, $4)", option_id, user_id, quantity, key
    )

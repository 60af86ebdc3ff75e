"""Calls to the SQL functions shared by the SQL-level tests."""

from tests.people import USER_ID


async def create_option(conn, allocation, max_per_user=None):
    return await conn.fetchval(
        "SELECT id FROM create_ticket_option('Gig', '', $1, $2)", allocation, max_per_user
    )


def ticket_requests(option_id, user_ids, quantities, keys=None, callers=None, ttls=None):
    """A batch's api.ticket_request[] (as asyncpg sends a composite: a tuple per request) for one option."""
    count = len(user_ids)
    return [(option_id, user, quantity, key, caller, ttl) for user, quantity, key, caller, ttl in zip(
        user_ids, quantities, keys or [None] * count, callers or [None] * count, ttls or [None] * count, strict=True)]


async def purchase(conn, option_id, quantity, user_id=USER_ID, key=None):
    return await conn.fetchrow(
        "SELECT * FROM purchase_tickets($1, $2, $3, $4)", option_id, user_id, quantity, key
    )

"""The one buyer the tests name: USER_ID as asyncpg returns a uuid, USER as JSON and URLs carry it."""

import uuid

USER_ID = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
USER = str(USER_ID)

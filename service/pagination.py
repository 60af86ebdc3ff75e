"""Opaque keyset cursors: the (created_at, id) of the last row of a page."""

import base64
import uuid
from datetime import datetime, timezone

from .errors import INVALID_ARGUMENT, Problem


def encode_cursor(created_at: datetime, row_id) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, row_id = raw.split("|")
        parsed = datetime.fromisoformat(created_at), uuid.UUID(row_id)
        if parsed[0].tzinfo is None:
            raise ValueError("cursor time has no zone")
        # In UTC, as PostgreSQL reads it: 0001-01-01T00:00+14:00 is before year 1 (OverflowError).
        return parsed[0].astimezone(timezone.utc), parsed[1]
    except (ValueError, OverflowError):  # also binascii.Error and UnicodeDecodeError
        message = "cursor is not one this API gave out; pass next_cursor from the previous page unchanged"
        raise Problem(INVALID_ARGUMENT, message, [{"field": "cursor", "message": message}]) from None

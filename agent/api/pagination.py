"""The one way lists page: `limit` (bounded), then `offset` or an opaque `cursor` from the previous
answer; answers carry `pagination` with the total and, when more remain, the next cursor."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import Field

from agent.api.errors import ApiError
from agent.api.routing import QueryModel

MAX_LIMIT = 1000


class PageQuery(QueryModel):
    limit: int = Field(100, ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")
    offset: int = Field(0, ge=0, le=2**31, description="skip this many (or use cursor)")
    cursor: str | None = Field(None, description="next_cursor of the previous page")


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid query parameter: cursor: not a cursor this API gave out",
                       {"errors": [{"field": "cursor", "message": "not a cursor this API gave out"}]})
    return data


def pagination(total: int, limit: int, offset: int, returned: int, next_position: dict[str, Any] | None) -> dict:
    has_more = next_position is not None and returned == limit
    return {
        "total": total, "limit": limit, "offset": offset, "returned": returned, "has_more": has_more,
        "next_cursor": encode_cursor(next_position) if has_more and next_position is not None else None,
    }

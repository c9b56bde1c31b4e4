"""The one way lists page: `limit` (bounded), then `offset` or an opaque `cursor` from the previous
answer; answers carry `pagination` with the total and, when more remain, the next cursor.

Cursors are signed (HMAC-SHA256 with a secret kept in the database, so they outlive a restart): a
handler can trust the position inside one, and an edited or made-up cursor is a 400, not a page of
somebody's guess."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from pydantic import Field

from agent.api.errors import ApiError
from agent.api.routing import QueryModel

MAX_LIMIT = 1000


class PageQuery(QueryModel):
    limit: int = Field(100, ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")
    offset: int = Field(0, ge=0, le=2**31, description="skip this many (or use cursor)")
    cursor: str | None = Field(None, description="next_cursor of the previous page")


class _Secret:
    """Until the daemon installs the database's secret (tests of pure functions): one per process."""

    key = secrets.token_bytes(32)


def set_cursor_secret(secret: bytes) -> None:
    if len(secret) < 16:
        raise ValueError("a cursor secret needs at least 16 bytes")
    _Secret.key = secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signature(payload: str) -> str:
    return _b64(hmac.new(_Secret.key, payload.encode(), hashlib.sha256).digest()[:16])


def encode_cursor(position: dict[str, Any]) -> str:
    payload = _b64(json.dumps(position, separators=(",", ":")).encode())
    return f"{payload}.{_signature(payload)}"


def _refuse(why: str) -> ApiError:
    return ApiError(400, f"invalid query parameter: cursor: {why}", {"errors": [{"field": "cursor", "message": why}]})


def decode_cursor(cursor: str) -> dict[str, Any]:
    payload, _, signature = cursor.partition(".")
    if not signature or not hmac.compare_digest(signature.encode(), _signature(payload).encode()):
        raise _refuse("not a cursor this API gave out (altered, or from another Vigil)")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise _refuse("not a cursor this API gave out")
    return data


def pagination(total: int, limit: int, offset: int, returned: int, next_position: dict[str, Any] | None) -> dict:
    has_more = next_position is not None and returned == limit
    return {
        "total": total, "limit": limit, "offset": offset, "returned": returned, "has_more": has_more,
        "next_cursor": encode_cursor(next_position) if has_more and next_position is not None else None,
    }

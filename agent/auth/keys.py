"""API keys: random tokens, stored as SHA-256 (they are 256-bit random, so no slow hash is
needed), cached in memory for the per-request check, with `last_used` written back in batches."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass

import structlog

from agent.auth.roles import ROLES
from agent.store import Store
from agent.store import apikeys as sql
from agent.store.apikeys import ApiKeyRow

log = structlog.get_logger("vigil.auth")
TOKEN_PREFIX = "vgl_"


def hash_token(token: str) -> str:
    # surrogateescape: a header with bytes that are not UTF-8 is just a key that matches nothing.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class AuthFailure:
    reason: str  # missing, unknown, revoked, expired
    key_id: str | None = None  # known for a revoked or expired key (the audit log names it)

    @property
    def message(self) -> str:
        return {
            "missing": "authentication required: send Authorization: Bearer <key> or X-API-Key",
            "unknown": "invalid API key",
            "revoked": "API key has been revoked",
            "expired": "API key has expired",
        }[self.reason]


def _new_key(name: str, role: str, expires_at: float | None, created_by: str | None) -> tuple[ApiKeyRow, str]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        id="key_" + secrets.token_hex(6), name=name, role=role, key_hash=hash_token(token),
        preview=f"{TOKEN_PREFIX}****{token[-4:]}", created_at=time.time(), created_by=created_by,
        last_used=None, expires_at=expires_at, revoked_at=None,
    )
    return row, token


class KeyRing:
    def __init__(self, store: Store):
        self.store = store
        self._by_hash: dict[str, ApiKeyRow] = {}
        self._used: dict[str, float] = {}

    async def load(self) -> None:
        self._by_hash = {row.key_hash: row for row in await sql.all_keys(self.store)}

    def authenticate(self, token: str | None) -> ApiKeyRow | AuthFailure:
        if not token:
            return AuthFailure("missing")
        row = self._by_hash.get(hash_token(token))
        if row is None:
            return AuthFailure("unknown")
        now = time.time()
        if row.revoked_at is not None:
            return AuthFailure("revoked", row.id)
        if row.expires_at is not None and row.expires_at <= now:
            return AuthFailure("expired", row.id)
        row.last_used = now
        self._used[row.id] = now
        return row

    async def create(
        self, name: str, role: str, expires_at: float | None = None, created_by: str | None = None
    ) -> tuple[ApiKeyRow, str]:
        """Store a new key; the token is returned here and never again."""
        row, token = _new_key(name, role, expires_at, created_by)
        await self._insert(row)
        return row, token

    async def _insert(self, row: ApiKeyRow) -> None:
        await sql.insert(self.store, row)
        self._by_hash[row.key_hash] = row

    async def revoke(self, key_id: str) -> bool:
        row = self.get(key_id)
        if row is None:
            return False
        at = time.time()
        if not await sql.revoke(self.store, key_id, at):
            return False
        row.revoked_at = at
        return True

    def get(self, key_id: str) -> ApiKeyRow | None:
        return next((row for row in self._by_hash.values() if row.id == key_id), None)

    def all(self) -> list[ApiKeyRow]:
        return sorted(self._by_hash.values(), key=lambda r: (r.created_at, r.id))

    def active_count(self) -> int:
        now = time.time()
        return sum(
            1 for r in self._by_hash.values()
            if r.revoked_at is None and (r.expires_at is None or r.expires_at > now)
        )

    async def flush_last_used(self) -> None:
        if not self._used:
            return
        pending, self._used = self._used, {}
        await sql.touch(self.store, pending)

    async def ensure_bootstrap_key(self, state_dir: str) -> str | None:
        """With no usable admin key (first start, or all revoked or expired: the way back in for
        someone who lost theirs), create one in <state_dir>/admin.key (0600)."""
        now = time.time()
        if any(
            r.role == "admin" and r.revoked_at is None and (r.expires_at is None or r.expires_at > now)
            for r in self._by_hash.values()
        ):
            return None
        path = os.path.join(state_dir, "admin.key")
        row, token = _new_key("bootstrap admin", "admin", None, "vigil")
        # The file first: a crash before the insert leaves no key, so the next start makes a new one.
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        await self._insert(row)
        log.info("admin_key_created", path=path, key_id=row.id)
        return path

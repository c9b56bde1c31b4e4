"""The `security:` config section (the seed's access policy), next to the code that enforces it."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from agent.config.durations import Duration
from agent.config.section import Section


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return value.strip()


class SecurityConfig(Section):
    """Who may call the authenticated API routes. The probes (/healthz, /readyz), heartbeat pings and
    /metrics (which has its own rules under `metrics:`) are never affected."""

    max_failed_auth: int = Field(
        5, ge=1, le=10_000, description="failed authentications from one address within failure_window that lock it",
    )
    failure_window: Duration = Field(900.0, gt=0, description="how far back failed authentications are counted")
    lockout_minutes: float = Field(
        15.0, gt=0, le=525_600, description="how long a locked address is refused (fractions of a minute allowed)",
    )
    allowlist: list[str] = Field(
        default_factory=list, max_length=1000,
        description="addresses or CIDR networks that may call authenticated routes; empty: every address. "
                    "Loopback is not implied: list 127.0.0.1 (and ::1) for the vigil CLI on this host",
    )
    lockout_exempt: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"], max_length=1000,
        description="addresses or CIDR networks never locked out (fail2ban's ignoreip): by default loopback, so "
                    "a local script with a stale key cannot lock the vigil CLI out; their failures still count "
                    "in the status",
    )
    max_key_age: Duration | None = Field(
        None, ge=86400, description="API keys created longer ago are refused (401, reason too_old), as the seed's "
                                    "password max_age_days; at least 1d (keys are rotated by people); none: no limit",
    )

    @field_validator("allowlist", "lockout_exempt")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [_network(v) for v in value]

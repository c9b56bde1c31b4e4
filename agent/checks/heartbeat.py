"""`heartbeat`: a cron or batch job reports that it ran, instead of Vigil probing it (healthchecks.io).

The job calls `POST /api/v1/checks/{name}/ping` when it succeeded (`/start` before it begins,
`/fail` when it failed), authenticated by the check's own `token` so that a crontab holds no
admin key. The API records each call in the `HeartbeatBook` (agent.checks.heartbeats); this
check only reads the book, on its `interval`: the interval is how soon a missed ping is noticed,
not how often the job runs. A missed ping is already a confirmed failure (the job had `grace`
to be late), so `fall` and `rise` default to 1.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from agent.checks.base import Check, CheckConfig, CheckResult, Perfdata, Status, register
from agent.checks.heartbeats import Heartbeat
from agent.config.durations import Duration

MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 256


class HeartbeatConfig(CheckConfig):
    type: Literal["heartbeat"]
    period: Duration = Field(gt=0, description="expected time between pings: the job's schedule")
    grace: Duration = Field(300.0, ge=0, description="how late a ping may be before the check turns CRITICAL")
    token: SecretStr = Field(description=f"what the job sends to authenticate its pings; {MIN_TOKEN_CHARS}+ characters")
    max_run_time: Duration | None = Field(
        None, gt=0, description="a /start with no ping or fail after this long is CRITICAL"
    )
    interval: Duration = Field(60.0, gt=0, description="how often lateness is evaluated (not the job's schedule)")
    timeout: Duration = Field(5.0, gt=0, description="the check only reads recorded pings: it never needs long")
    fall: int = Field(1, ge=1, description="a missed heartbeat already had `grace` to arrive: no second look")
    rise: int = Field(1, ge=1, description="one good ping ends the failure")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        # The messages never include the value: validation errors end up in logs.
        text = value.get_secret_value()
        if len(text) < MIN_TOKEN_CHARS:
            raise ValueError(f"token must have at least {MIN_TOKEN_CHARS} characters (got {len(text)})")
        if len(text) > MAX_TOKEN_CHARS or not text.isprintable() or any(c.isspace() for c in text):
            raise ValueError(f"token must be printable characters without spaces, at most {MAX_TOKEN_CHARS}")
        return value

    def token_matches(self, given: str) -> bool:
        """Whether a ping's token is this check's, in constant time (for the API's heartbeat routes)."""
        return hmac.compare_digest(given.encode(), self.token.get_secret_value().encode())


def human(seconds: float) -> str:
    """The two largest units: "2.5s", "45s", "5m 3s", "2h 5m", "3d 4h"."""
    if 0 < seconds < 9.95:
        return f"{seconds:.1f}s"
    rest = max(round(seconds), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append((count, unit))
    return " ".join(f"{count}{unit}" for count, unit in parts[:2] if count) or "0s"


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def open_start(beat: Heartbeat) -> float | None:
    """When the run in progress started: a `/start` with no ping or fail after it."""
    start = beat.last_start
    if start is None or any(t is not None and t >= start for t in (beat.last_ping, beat.last_fail)):
        return None
    return start


@register
class HeartbeatCheck(Check):
    type = "heartbeat"
    Config = HeartbeatConfig

    def _now(self) -> float:
        return self.ctx.now() if self.ctx.now is not None else time.time()

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, HeartbeatConfig)
        book = self.ctx.heartbeats
        if book is None:
            return CheckResult(Status.UNKNOWN, "pings are not recorded in this context (no heartbeat book)")
        now = self._now()
        beat: Heartbeat = book.get(self.name) or book.watch(self.name, now)
        status, message = self._judge(cfg, beat, now)
        perf = []
        if beat.last_ping is not None:
            perf.append(Perfdata("since_last_ping", max(now - beat.last_ping, 0.0), "s",
                                 crit=f"{cfg.period + cfg.grace:g}", min=0.0))
        if beat.run_time is not None:
            perf.append(Perfdata("run_time", beat.run_time, "s", min=0.0))
        base = beat.last_ping if beat.last_ping is not None else beat.first_seen
        details = {
            "first_seen": iso(beat.first_seen), "last_ping": iso(beat.last_ping),
            "last_start": iso(beat.last_start), "last_fail": iso(beat.last_fail),
            "exit_status": beat.exit_status, "run_time": beat.run_time, "message": beat.message,
            "running_since": iso(open_start(beat)), "period": cfg.period, "grace": cfg.grace,
            "due_at": iso(base + cfg.period), "late_at": iso(base + cfg.period + cfg.grace),
        }
        return CheckResult(status, message, perf, details)

    @staticmethod
    def _judge(cfg: HeartbeatConfig, beat: Heartbeat, now: float) -> tuple[Status, str]:
        expected = f"expected every {human(cfg.period)} (+grace {human(cfg.grace)})"
        if beat.last_fail is not None and (beat.last_ping is None or beat.last_fail > beat.last_ping):
            code = f" (exit status {beat.exit_status})" if beat.exit_status is not None else ""
            said = f": {beat.message}" if beat.message else ""
            return Status.CRITICAL, f"job reported failure{code} {human(now - beat.last_fail)} ago{said}"
        started = open_start(beat)
        if started is not None and cfg.max_run_time is not None and now - started > cfg.max_run_time:
            return Status.CRITICAL, (f"started at {iso(started)}, no completion after {human(now - started)} "
                                     f"(max_run_time {human(cfg.max_run_time)})")
        running = f"; running since {iso(started)}" if started is not None else ""
        if beat.last_ping is None:
            if now > beat.first_seen + cfg.period + cfg.grace:
                return Status.CRITICAL, (f"no ping since Vigil started watching at {iso(beat.first_seen)} "
                                         f"({human(now - beat.first_seen)} ago), {expected}{running}")
            return Status.OK, f"waiting for the first ping (due by {iso(beat.first_seen + cfg.period)}){running}"
        ago = human(now - beat.last_ping)
        ran = f" (ran {human(beat.run_time)})" if beat.run_time is not None else ""
        if now > beat.last_ping + cfg.period + cfg.grace:
            return Status.CRITICAL, f"late: last ping {ago} ago at {iso(beat.last_ping)}, {expected}{running}"
        if now > beat.last_ping + cfg.period:
            late_at = iso(beat.last_ping + cfg.period + cfg.grace)
            return Status.OK, f"due: last ping {ago} ago{ran}, {expected}; late after {late_at}{running}"
        return Status.OK, f"last ping {ago} ago{ran}, next due by {iso(beat.last_ping + cfg.period)}{running}"

"""Pings from cron jobs for `heartbeat` checks: the last ping, start and failure of each.

The API records a ping here (and in the store, before it answers), the heartbeat check reads it
when it runs. Times are Unix seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Heartbeat:
    first_seen: float  # when Vigil started watching this check (lateness before any ping counts from here)
    last_ping: float | None = None  # last success (`/ping`, or `/ping` with exit_status 0)
    last_start: float | None = None  # last `/start`
    last_fail: float | None = None  # last `/fail`, or a `/ping` with a non-zero exit_status
    exit_status: int | None = None  # of the last ping or fail that gave one
    run_time: float | None = None  # seconds: given by the job, or measured from its `/start`
    message: str | None = None  # first line of the body the job sent, if any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Heartbeat:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


class HeartbeatBook:
    def __init__(self) -> None:
        self._beats: dict[str, Heartbeat] = {}

    def get(self, name: str) -> Heartbeat | None:
        return self._beats.get(name)

    def watch(self, name: str, now: float) -> Heartbeat:
        """The record of `name`, created (first_seen = now) if Vigil did not know it yet."""
        beat = self._beats.get(name)
        if beat is None:
            beat = self._beats[name] = Heartbeat(first_seen=now)
        return beat

    def restore(self, name: str, beat: Heartbeat) -> None:
        self._beats[name] = beat

    def forget(self, name: str) -> None:
        self._beats.pop(name, None)

    def record(self, name: str, kind: str, now: float, exit_status: int | None = None,
               run_time: float | None = None, message: str | None = None) -> Heartbeat:
        """Apply a `ping`, `start` or `fail` from the job."""
        beat = self.watch(name, now)
        if kind == "start":
            beat.last_start = now
            return beat
        if run_time is None and beat.last_start is not None and (
            beat.last_ping is None or beat.last_start > beat.last_ping
        ) and (beat.last_fail is None or beat.last_start > beat.last_fail):
            run_time = max(now - beat.last_start, 0.0)
        failed = kind == "fail" or (exit_status is not None and exit_status != 0)
        if failed:
            beat.last_fail = now
        else:
            beat.last_ping = now
        beat.exit_status = exit_status
        beat.run_time = run_time
        beat.message = message
        return beat

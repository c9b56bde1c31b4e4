"""The stored-log settings under `log:` (`log.store`, `log.files`), next to the code that uses them.

`log.level`/`log.format` say what goes to stdout (journald); `log.store` says what is kept in the
database for `GET /api/v1/logs`, so the two levels can differ (debug in the store, info on stdout)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.config.durations import Duration
from agent.config.section import AbsolutePath, Section

StoredLevel = Literal["debug", "info", "warning", "error"]


class LogStoreConfig(Section):
    """Vigil's own log events kept in the database."""

    enabled: bool = Field(True, description="keep Vigil's own log events in the database for GET /api/v1/logs")
    level: StoredLevel = Field("info", description="lowest level kept (independent of log.level for stdout)")
    retention: Duration = Field(7 * 86400.0, ge=3600, description="stored log events older than this are pruned")
    queue_size: int = Field(
        10_000, ge=100, le=1_000_000,
        description="events waiting to be written; when full, new ones are dropped and counted",
    )
    flush_interval: Duration = Field(1.0, gt=0, le=60, description="queued events are written at least this often")


class LogFileConfig(Section):
    """A log file of the host that GET /api/v1/logs reads on demand (from its end, bounded)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the `service` its lines are shown under")
    path: AbsolutePath
    max_read_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="only this much of the file's end is read",
    )

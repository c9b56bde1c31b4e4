"""The audit log: who did what to this host through Vigil, in a tamper-evident chain.

Writers call `record`; it returns once the row is committed, so an action that is audited before
it runs is never lost by a crash in the middle of it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from agent.store import Store
from agent.store import audit as rows

log = structlog.get_logger("vigil.audit")


class Audit:
    def __init__(self, store: Store):
        self.store = store

    async def record(
        self, event_type: str, *, actor: str | None = None, remote: str | None = None, target: str | None = None,
        outcome: str | None = None, details: dict[str, Any] | None = None,
    ) -> int:
        row_id = await rows.append(self.store, time.time(), event_type, actor, remote, target, outcome, details or {})
        log.info("audit", event_type=event_type, actor=actor, target=target, outcome=outcome)
        return row_id

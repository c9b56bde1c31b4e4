"""The in-process event bus behind `GET /api/v1/events`.

Publishing never blocks: each subscriber has a bounded queue and a slow one loses its oldest
events (counted in `vigil_events_dropped_total`) rather than slowing the daemon down.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from agent.selfmetrics import SelfMetrics


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    time: float
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "time": self.time, "data": self.data}


class Subscription:
    def __init__(self, bus: EventBus, types: frozenset[str] | None, size: int):
        self._bus = bus
        self.types = types
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, metrics: SelfMetrics, queue_size: int = 256):
        self._metrics = metrics
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)

    def publish(self, type_: str, **data: Any) -> Event:
        event = Event(next(self._ids), type_, time.time(), data)
        for sub in list(self._subscribers):
            if sub.types is not None and type_ not in sub.types:
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
                self._metrics.events_dropped.inc()
            sub.queue.put_nowait(event)
        return event

    def subscribe(self, types: set[str] | None = None) -> Subscription:
        sub = Subscription(self, frozenset(types) if types else None, self._queue_size)
        self._subscribers.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

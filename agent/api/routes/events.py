"""The event bus over a WebSocket: one JSON message per event."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web
from pydantic import Field

from agent.api.routes import ROUTES
from agent.api.routing import QueryModel, parse_query
from agent.api.services import services


class EventsQuery(QueryModel):
    types: str | None = Field(None, description="comma-separated event types to receive; default all")


@ROUTES.route("GET", "/api/v1/events", summary="WebSocket stream of internal events", scope="read:system",
              query=EventsQuery, websocket=True, tag="events")
async def events(request: web.Request) -> web.WebSocketResponse:
    svc = services(request)
    q = parse_query(request, EventsQuery)
    types = {t.strip() for t in q.types.split(",") if t.strip()} if q.types else None
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    with svc.bus.subscribe(types) as sub:
        await ws.send_json({"type": "hello", "data": {"types": sorted(types) if types else "all"}})
        reader = asyncio.create_task(_drain(ws))
        stopping = asyncio.create_task(svc.stopping.wait())
        try:
            while True:
                getter = asyncio.create_task(sub.get())
                done, _ = await asyncio.wait({getter, reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                await ws.send_json(getter.result().as_dict())
        finally:
            for task in (reader, stopping):
                task.cancel()
            await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) client messages until the client closes."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break

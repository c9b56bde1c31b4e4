"""Vigil's own caches (the seed's cache management): list with sizes and hit rates, clear by name
pattern and level. The work is in agent/diagnostics/caches.py."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.routes import ROUTES
from agent.api.routing import QueryModel, parse_query
from agent.api.services import services
from agent.diagnostics.caches import LEVELS


class ClearQuery(QueryModel):
    pattern: str = Field("*", min_length=1, max_length=200,
                         description="glob over cache names, e.g. `history.*` (default: every cache)")
    level: Literal["L1", "L2", "all"] = Field(
        "all", description="L1: caches in front of computation; L2: in front of the database or /proc")


@ROUTES.route("GET", "/api/v1/cache", summary="Vigil's own caches: entries, bytes, hit rates", scope="read:system",
              category="health", tag="diagnostics")
async def list_caches(request: web.Request) -> web.Response:
    rows = services(request).caches.describe()
    hits = sum(r["hits"] for r in rows if r["hit_rate"] is not None)
    lookups = sum(r["hits"] + r["misses"] for r in rows if r["hit_rate"] is not None)
    by_level = {
        level: {"caches": sum(1 for r in rows if r["level"] == level),
                "entries": sum(r["entries"] for r in rows if r["level"] == level),
                "bytes": sum(r["bytes"] or 0 for r in rows if r["level"] == level)}
        for level in LEVELS
    }
    return ok({
        "caches": rows,
        "summary": {"caches": len(rows), "entries": sum(r["entries"] for r in rows),
                    "bytes": sum(r["bytes"] or 0 for r in rows), "hits": hits, "misses": lookups - hits,
                    "hit_rate": round(hits / lookups, 4) if lookups else None, "by_level": by_level},
    })


@ROUTES.route("DELETE", "/api/v1/cache", summary="Clear Vigil's caches by name pattern and level",
              scope="write:maintenance", category="maintenance", query=ClearQuery, tag="diagnostics",
              responses={404: "no cache matches the pattern at that level (the answer lists the names)"})
async def clear_caches(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, ClearQuery)
    if not svc.caches.select(q.pattern, q.level):
        known = ", ".join(svc.caches.names())
        raise ApiError(404, f"no cache matches {q.pattern!r} at level {q.level}; known: {known}",
                       {"pattern": q.pattern, "level": q.level, "known": svc.caches.names()})
    cleared = svc.caches.clear(q.pattern, q.level)
    return ok({
        "cleared": cleared,
        "cleared_keys": sum(c["entries"] for c in cleared),
        "bytes": sum(c["bytes"] or 0 for c in cleared),
        "pattern": q.pattern,
        "levels": sorted({c["level"] for c in cleared}),
    })

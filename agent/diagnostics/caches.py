"""Vigil's own caches, as `GET /api/v1/cache` lists them and `DELETE /api/v1/cache` clears them.

Every cache here only saves work: clearing one never changes an answer, it only makes the next few
slower while it refills. Levels follow the seed's L1/L2 by what a miss costs: `L1` caches sit in front
of computation (label derivations, parsed templates, rendered exposition), `L2` in front of reading
the database or /proc (decoded chunks, the process scan). The caches belong to their components; this
registry reads and clears them through the components' own methods.
"""

from __future__ import annotations

import fnmatch
import itertools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.alerting import template
from agent.promql import caches as promql_caches

if TYPE_CHECKING:
    from agent.api.services import Services

LEVELS = ("L1", "L2")
SAMPLE = 64  # entries sized to estimate a large cache's bytes


@dataclass(frozen=True)
class CacheFigures:
    entries: int
    bytes: int | None  # estimated where marked so; None: not known
    hits: int | None = None
    misses: int | None = None
    max_entries: int | None = None
    max_bytes: int | None = None
    bytes_estimated: bool = False


@dataclass(frozen=True)
class Cache:
    name: str
    level: str
    owner: str  # the part of Vigil that fills it
    description: str
    figures: Callable[[], CacheFigures]
    clear: Callable[[], int]  # returns the entries dropped

    def view(self) -> dict[str, Any]:
        f = self.figures()
        lookups = (f.hits or 0) + (f.misses or 0) if f.hits is not None and f.misses is not None else None
        return {
            "name": self.name, "level": self.level, "owner": self.owner, "description": self.description,
            "entries": f.entries, "bytes": f.bytes, "bytes_estimated": f.bytes_estimated,
            "max_entries": f.max_entries, "max_bytes": f.max_bytes, "hits": f.hits, "misses": f.misses,
            "hit_rate": round(f.hits / lookups, 4) if lookups and f.hits is not None else None,
        }


def estimate(items: Iterable[Any], count: int) -> int:
    """Bytes of `count` objects from a sample of them (shallow sizes of each and its direct parts)."""
    sample = list(itertools.islice(items, SAMPLE))
    if not sample:
        return 0
    total = 0
    for obj in sample:
        total += sys.getsizeof(obj) + sum(sys.getsizeof(part) for part in _parts(obj))
    return int(total / len(sample) * count)


def _parts(obj: Any) -> Iterable[Any]:
    if isinstance(obj, tuple | list):
        return obj
    return [getattr(obj, name, None) for name in getattr(type(obj), "__slots__", ())]


class Caches:
    def __init__(self, items: Iterable[Cache]):
        self._items = {c.name: c for c in items}

    def names(self) -> list[str]:
        return list(self._items)

    def select(self, pattern: str = "*", level: str = "all") -> list[Cache]:
        """The caches whose name matches the glob `pattern` at `level` (`L1`, `L2` or `all`)."""
        return [c for c in self._items.values()
                if fnmatch.fnmatchcase(c.name, pattern) and (level == "all" or c.level == level)]

    def describe(self) -> list[dict[str, Any]]:
        return [c.view() for c in self._items.values()]

    def clear(self, pattern: str = "*", level: str = "all") -> list[dict[str, Any]]:
        """Clear the selected caches; what each held before."""
        out = []
        for cache in self.select(pattern, level):
            before = cache.figures()
            dropped = cache.clear()
            out.append({"name": cache.name, "level": cache.level, "entries": dropped, "bytes": before.bytes})
        return out


def _processes_scan(svc: Services) -> CacheFigures:
    rows = svc.processes.cached_rows()
    return CacheFigures(len(rows), estimate(rows, len(rows)), svc.processes.hits, svc.processes.misses,
                        bytes_estimated=True)


def _processes_users(svc: Services) -> CacheFigures:
    users = svc.processes.cached_users()
    return CacheFigures(len(users), estimate(users.items(), len(users)), bytes_estimated=True)


def _tsdb(svc: Services, name: str) -> CacheFigures:
    f = svc.tsdb.caches()[name]
    return CacheFigures(f["entries"], f["bytes"], f["hits"], f["misses"], max_bytes=f.get("max_bytes"))


def _promql() -> CacheFigures:
    specs, entries = promql_caches.sizes()
    # Entries are label tuples, mostly shared with the series they came from: count the dict slots and keys.
    return CacheFigures(entries, entries * 100 + specs * 250, max_entries=promql_caches.MAX_SPECS
                        * promql_caches.MAX_ENTRIES, bytes_estimated=True)


def _templates() -> CacheFigures:
    info = template.compile_cache()
    return CacheFigures(info.currsize, None, info.hits, info.misses, max_entries=info.maxsize)


def _exporter(svc: Services) -> CacheFigures:
    sizes = svc.exporter.cached_bytes()
    return CacheFigures(len(sizes), sum(sizes.values()))


def build(svc: Services) -> Caches:
    """The registry over a daemon's Services (the API builds it once, on first use)."""
    def tsdb_cache(name: str, level: str, description: str) -> Cache:
        return Cache(f"history.{name}", level, "history", description, lambda: _tsdb(svc, name),
                     lambda: svc.tsdb.clear_cache(name))

    return Caches([
        Cache("processes.scan", "L2", "processes",
              "the process table scan shared by callers within processes.cache_ttl",
              lambda: _processes_scan(svc), svc.processes.clear_scan),
        Cache("processes.users", "L2", "processes", "user names of uids seen in the process table",
              lambda: _processes_users(svc), svc.processes.clear_users),
        tsdb_cache("decoded_chunks", "L2", "decompressed history chunks kept for repeated queries "
                                           "(history: 32 MiB budget)"),
        tsdb_cache("newest_block", "L2", "each series' points of the newest compacted hour, until the next "
                                         "compaction (rules reaching back past the head)"),
        tsdb_cache("recent_selects", "L1", "head-only selections of the current head version (rule groups "
                                           "selecting the same series twice)"),
        tsdb_cache("sort_keys", "L1", "each series' labels flattened into one sortable string"),
        Cache("promql.labels", "L1", "promql", "grouping keys, matching signatures and result label sets "
                                                "derived by aggregations and binary operators",
              _promql, promql_caches.clear),
        Cache("alerting.templates", "L1", "alerting", "parsed alert templates (annotations and labels)",
              _templates, template.clear_compile_cache),
        Cache("exporter.rendered", "L1", "exporter", "the host part of /metrics rendered per format and snapshot",
              lambda: _exporter(svc), svc.exporter.clear_cache),
    ])

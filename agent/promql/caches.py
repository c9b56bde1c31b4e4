"""Label work remembered across queries: rules run the same expressions over the same series at every
evaluation, so grouping keys, matching signatures and result label sets are the same each time.

Each cache belongs to one spec (the grouping of an aggregation, the matching of a binary operator) and
maps an input label set to what was derived from it. Plain dict reads and writes: safe between query
threads, where a race only derives a value twice. Both the number of specs and the entries per spec are
bounded; past the bound the cache starts over, which costs only the derivations again.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

MAX_SPECS = 1000
MAX_ENTRIES = 100_000

_CACHES: dict[Hashable, dict[Any, Any]] = {}


def shared_cache(spec: Hashable) -> dict[Any, Any]:
    """The cache of `spec` (a hashable description of what the derivation depends on)."""
    cache = _CACHES.get(spec)
    if cache is None:
        if len(_CACHES) >= MAX_SPECS:
            _CACHES.clear()
        cache = _CACHES.setdefault(spec, {})
    elif len(cache) > MAX_ENTRIES:
        cache.clear()
    return cache


def sizes() -> tuple[int, int]:
    """(specs, entries over all specs), for GET /api/v1/cache."""
    caches = list(_CACHES.values())
    return len(caches), sum(len(c) for c in caches)


def clear() -> int:
    """Forget every derivation (they are made again as queries need them); returns the entries dropped."""
    dropped = sizes()[1]
    _CACHES.clear()
    return dropped

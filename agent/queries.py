"""PromQL over the local history, off the event loop.

The engine is pure and CPU-bound, so each query (parsing, evaluation and, for the HTTP API, the
JSON rendering of its answer) runs in a thread pool, at most `history.query.concurrency` at once;
more wait their turn, and the wait counts against their deadline. The deadline is enforced inside
the engine, because a thread cannot be killed: a slot is freed only when its thread is done, so a
client that hangs up cannot make more queries run at once than configured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agent.config.schema import QueryConfig
from agent.promql.ast import Expr, Matcher
from agent.promql.engine import Engine
from agent.promql.parser import parse
from agent.promql.values import Labels, Matrix, ParseError, PromQLError, QueryLimitError, QueryTimeout, Value
from agent.store import StoreError
from agent.tsdb.db import TSDB

T = TypeVar("T")
Render = Callable[[Expr, Any], Any]


class QueryService:
    def __init__(self, tsdb: TSDB, config: QueryConfig):
        self.tsdb = tsdb
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="promql")
        self._slots = asyncio.Semaphore(config.concurrency)
        self._running: set[concurrent.futures.Future[Any]] = set()
        self.configure(config)

    def configure(self, config: QueryConfig) -> None:
        """Apply new limits; queries already running keep the engine and the slots they started with."""
        if getattr(self, "config", None) is not None and config.concurrency != self.config.concurrency:
            self._slots = asyncio.Semaphore(config.concurrency)
        self.config = config
        self.engine = Engine(
            lookback_delta_ms=int(config.lookback_delta * 1000),
            max_samples=config.max_samples,
            max_points_per_series=config.max_points_per_series,
        )

    def timeout(self, requested: float | None) -> float:
        """The timeout parameter may shorten the configured limit, never extend it."""
        limit = self.config.timeout
        return limit if requested is None else min(requested, limit)

    async def _run(self, fn: Callable[[float], T], budget: float) -> T:
        """`fn(remaining_seconds)` in the pool once a slot is free; time spent waiting counts."""
        deadline = time.monotonic() + budget
        slots = self._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = self._pool.submit(_guarded, fn, deadline)
        except RuntimeError:  # the pool is shut down: the daemon is stopping
            slots.release()
            raise StoreError("the metrics history is closing") from None
        self._running.add(future)

        def done(_: concurrent.futures.Future[Any]) -> None:
            self._running.discard(future)
            slots.release()

        future.add_done_callback(lambda f: loop.call_soon_threadsafe(done, f))
        return await asyncio.wrap_future(future)

    async def instant(self, query: str | Expr, t_ms: int, budget: float | None = None,
                      render: Render | None = None) -> Any:
        """The query's value, or `render(expr, value)` computed in the worker (JSON for the API)."""
        limit = self.timeout(budget)
        engine = self.engine

        def work(left: float) -> Any:
            expr = parse(query) if isinstance(query, str) else query
            value: Value = engine.instant_query(self.tsdb.querier(), expr, t_ms, left)
            return render(expr, value) if render else value

        return await self._run(work, limit)

    async def range(self, query: str | Expr, start_ms: int, end_ms: int, step_ms: int,
                    budget: float | None = None, render: Render | None = None) -> Any:
        limit = self.timeout(budget)
        engine = self.engine

        def work(left: float) -> Any:
            expr = parse(query) if isinstance(query, str) else query
            value: Matrix = engine.range_query(self.tsdb.querier(), expr, start_ms, end_ms, step_ms, left)
            return render(expr, value) if render else value

        return await self._run(work, limit)

    async def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        return await self._run(lambda _left: self.tsdb.querier().series(matchers, mint, maxt), self.config.timeout)

    async def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return await self._run(lambda _left: self.tsdb.querier().label_names(matchers, mint, maxt), self.config.timeout)

    async def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int,
                           maxt: int) -> list[str]:
        return await self._run(
            lambda _left: self.tsdb.querier().label_values(name, matchers, mint, maxt), self.config.timeout
        )

    async def close(self, grace: float = 2.0) -> None:
        """Refuse new queries and give running ones a moment: the TSDB closes their read connections
        next (a query still running after that fails, which is all it can do during shutdown)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        running = [asyncio.wrap_future(f) for f in self._running]
        if running:
            await asyncio.wait(running, timeout=grace)


def _guarded(fn: Callable[[float], T], deadline: float) -> T:
    """Runs in the worker: failures other than PromQL's own become errors the API can name."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise QueryTimeout("query timed out while waiting for a free query slot")
    try:
        return fn(remaining)
    except PromQLError:
        raise
    except RecursionError:
        raise ParseError("query is nested too deeply to evaluate") from None
    except MemoryError:
        raise QueryLimitError("query needs more memory than this host can give it") from None
    except sqlite3.Error as exc:
        raise StoreError(f"reading the metrics history failed: {exc}") from None

"""PromQL over the local history, off the event loop.

The engine is pure and CPU-bound, so every query runs in a small thread pool (`history.query.
concurrency` threads; more queries wait their turn) against a querier that reads SQLite on its
own connection. The deadline is enforced inside the engine, because a thread cannot be killed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from agent.config.schema import QueryConfig
from agent.promql.ast import Expr, Matcher
from agent.promql.engine import Engine
from agent.promql.values import Labels, Matrix, QueryTimeout, Value
from agent.tsdb.db import TSDB

T = TypeVar("T")


class QueryService:
    def __init__(self, tsdb: TSDB, config: QueryConfig):
        self.tsdb = tsdb
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="promql")
        self._slots = asyncio.Semaphore(config.concurrency)
        self.configure(config)

    def configure(self, config: QueryConfig) -> None:
        """Apply new limits; queries already running keep the engine they started with."""
        self.config = config
        self.engine = Engine(
            lookback_delta_ms=int(config.lookback_delta * 1000),
            max_samples=config.max_samples,
            max_points_per_series=config.max_points_per_series,
        )
        self._slots = asyncio.Semaphore(config.concurrency)

    def timeout(self, requested: float | None) -> float:
        """The timeout parameter may shorten the configured limit, never extend it."""
        limit = self.config.timeout
        return limit if requested is None else min(requested, limit)

    async def _run(self, fn: Callable[[float], T], budget: float) -> T:
        """`fn(remaining_seconds)` in the pool, once a slot is free; time spent waiting counts."""
        deadline = time.monotonic() + budget
        async with self._slots:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueryTimeout("query timed out in the queue of waiting queries")
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, remaining)

    async def instant(self, query: str | Expr, t_ms: int, budget: float | None = None) -> Value:
        limit = self.timeout(budget)
        engine = self.engine
        return await self._run(lambda left: engine.instant_query(self.tsdb.querier(), query, t_ms, left), limit)

    async def range(self, query: str | Expr, start_ms: int, end_ms: int, step_ms: int,
                    budget: float | None = None) -> Matrix:
        limit = self.timeout(budget)
        engine = self.engine
        return await self._run(
            lambda left: engine.range_query(self.tsdb.querier(), query, start_ms, end_ms, step_ms, left), limit
        )

    async def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        return await self._run(lambda _left: self.tsdb.querier().series(matchers, mint, maxt), self.config.timeout)

    async def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return await self._run(lambda _left: self.tsdb.querier().label_names(matchers, mint, maxt), self.config.timeout)

    async def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int,
                           maxt: int) -> list[str]:
        return await self._run(
            lambda _left: self.tsdb.querier().label_values(name, matchers, mint, maxt), self.config.timeout
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

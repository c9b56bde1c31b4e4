"""Fixed-window request limits per client (key id, or address when unauthenticated) and category."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from agent.config.schema import RateLimitConfig


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # unix time the window ends
    window: float

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
            "X-RateLimit-Window": str(int(self.window)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(self, config: RateLimitConfig):
        self.config = config
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (client, category) -> (window, n)

    def limit_for(self, category: str) -> int:
        return self.config.categories.get(category, self.config.default)

    def hit(self, client: str, category: str, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        window = self.config.window
        index = int(now // window)
        limit = self.limit_for(category)
        key = (client, category)
        current, count = self._counts.get(key, (index, 0))
        if current != index:
            count = 0
        allowed = count < limit
        if allowed:
            count += 1
        self._counts[key] = (index, count)
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == index}
        return Verdict(allowed, limit, max(limit - count, 0), (index + 1) * window, window)

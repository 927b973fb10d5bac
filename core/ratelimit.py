"""Token buckets on Trio's clock, so ``MockClock`` drives them in tests."""

from __future__ import annotations

from collections import deque

import trio

from .config import Rate


class TokenBucket:
    __slots__ = ("_level", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = burst
        self._stamp = trio.current_time()

    @classmethod
    def of(cls, rate: Rate) -> TokenBucket:
        return cls(rate.rate, rate.burst)

    def _refill(self, now: float) -> None:
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self, cost: float = 1.0) -> bool:
        self._refill(trio.current_time())
        if self._level >= cost:
            self._level -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available."""
        self._refill(trio.current_time())
        missing = cost - self._level
        return 0.0 if missing <= 0 else missing / self.rate if self.rate > 0 else float("inf")


class ViolationCounter:
    """Counts limit breaches in a sliding window; ``exceeded`` when too many."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] | None = None  # most clients never breach: no deque

    def record(self) -> bool:
        """Record one breach; return True if the limit is now exceeded."""
        now = trio.current_time()
        if self._times is None:
            self._times = deque()
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) > self.limit

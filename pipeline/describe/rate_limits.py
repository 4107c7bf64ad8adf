"""How fast describe may send: the AIMD window of requests in flight and the --rpm / --tpm token buckets.

    window = AIMDWindow(64)
    await window.acquire(); ...; window.release(); window.success()  # or window.congestion()
    bucket = TokenBucket(rate_per_min=500); await bucket.take(1)

One window and at most two buckets are shared by every worker of a run (openai_backend.Runner).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

_COOLDOWN = 1.0  # seconds between two multiplicative decreases: one burst of 429s halves the window once


class AIMDWindow:
    """How many requests may be in flight: additive increase on success, multiplicative decrease on
    congestion (TCP's rule, as the OpenAI cookbook recommends for 429s)."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.decreases = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._last_decrease = -_COOLDOWN

    async def acquire(self) -> None:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us as we were cancelled: give it back
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < max(1, int(self.limit)):
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
            self._wake()

    def congestion(self) -> None:
        now = time.monotonic()
        if now - self._last_decrease >= _COOLDOWN:
            self._last_decrease = now
            self.limit = max(1.0, self.limit / 2.0)
            self.decreases += 1


class TokenBucket:
    """`rate_per_min` units per minute, bursting to one second's worth (or one request's cost)."""

    def __init__(self, rate_per_min: float):
        self.rate = rate_per_min / 60.0
        self.level = self.rate
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                self.level = min(max(self.rate, amount), self.level + (now - self.updated) * self.rate)
                self.updated = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)

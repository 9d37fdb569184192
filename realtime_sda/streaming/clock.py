"""Injectable clocks: every pacing decision of the streaming engine asks a clock, so tests
can replace wall time with a manual clock and run stalls and pacing fast and deterministically."""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["Clock", "SystemClock", "ManualClock"]


class Clock:
    """Monotonic time in seconds, and an async sleep on the same time line."""

    def now(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    async def sleep_until(self, when: float) -> None:
        delay = when - self.now()
        if delay > 0:
            await self.sleep(delay)

    @property
    def is_real(self) -> bool:
        """Whether threads may wait on this clock's time with real timeouts."""
        return False


class SystemClock(Clock):
    """``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    @property
    def is_real(self) -> bool:
        return True


class ManualClock(Clock):
    """Time that moves only when told (``advance``) or when a coroutine sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += max(seconds, 0.0)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

"""Virtual time for pacing tests: a clock whose ``sleep`` waits until the test moves time
(unlike :class:`~realtime_sda.streaming.ManualClock`, whose ``sleep`` moves time itself), and
a driver that moves it from event to event while a real :class:`InferenceWorker` thread steps
the session. Pacing is then checked on clock time, exactly, however loaded the machine is."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from realtime_sda.streaming.clock import Clock

__all__ = ["VirtualClock", "FrameLog", "drive_session"]


class VirtualClock(Clock):
    """Time that moves only by :meth:`advance_to`; a coroutine's ``sleep`` waits (on the event
    loop) until time reaches its deadline. ``now`` is thread-safe (the worker thread reads it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None], asyncio.Task[Any] | None]] = []

    def now(self) -> float:
        with self._lock:
            return self._t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now() + seconds, next(self._seq), fut, asyncio.current_task()))
        await fut

    def _prune(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(self._sleepers)

    def next_deadline(self) -> float | None:
        """The earliest time a sleeper waits for (None: nobody sleeps)."""
        self._prune()
        return self._sleepers[0][0] if self._sleepers else None

    def sleeping(self, task: asyncio.Task[Any] | None = None) -> int:
        """How many coroutines (of ``task``, if given) sleep on this clock."""
        return sum(1 for _, _, f, t in self._sleepers if not f.done() and (task is None or t is task))

    def advance_to(self, when: float) -> list[asyncio.Task[Any]]:
        """Move time to ``when`` (never back) and wake every sleeper due by then; returns
        their tasks (see :meth:`settle`)."""
        with self._lock:
            self._t = max(self._t, float(when))
            now = self._t
        woken = []
        self._prune()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, fut, task = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
                if task is not None:
                    woken.append(task)
        return woken

    async def settle(self, tasks: list[asyncio.Task[Any]], timeout: float = 10.0) -> None:
        """Wait until each of ``tasks`` sleeps on this clock again or has finished: all they
        do at this time is done. Raises RuntimeError after ``timeout`` real seconds (a task
        that waits for something else would otherwise stall the test)."""
        deadline = time.monotonic() + timeout
        spins = 0
        while not all(t.done() or self.sleeping(t) for t in tasks):
            if time.monotonic() > deadline:
                raise RuntimeError(f"tasks woken at {self.now():.3f} did not go back to sleep within {timeout} s")
            spins += 1
            await asyncio.sleep(0 if spins < 100 else 0.001)


@dataclass
class FrameLog:
    """What the driver saw: the clock time each frame was made (``times[k]``: frame k) and
    the producer's progress at each event (``(time, value)`` of ``progress()``)."""

    start: float
    times: list[float] = field(default_factory=list)
    progress: list[tuple[float, int]] = field(default_factory=list)
    end: float = 0.0


async def drive_session(
    clock: VirtualClock,
    worker: Any,
    session: Any,
    progress: Callable[[], int] = lambda: 0,
    started: Callable[[], bool] | None = None,
    max_events: int = 100_000,
    start_timeout: float = 20.0,
) -> FrameLog:
    """Run ``session`` (stepped by ``worker``'s own thread, on ``clock``) on virtual time until
    it finishes or closes. It starts once ``started()`` is true (default: something sleeps on
    the clock, e.g. a paced source after its first chunk); ``progress()`` is logged at each
    event (e.g. the samples a source pushed). At each time: the woken producers run until
    they sleep again, then ``worker.tick()`` (a round on the worker thread, which also runs
    its own rounds) is repeated until nothing more is due; then time moves to the next event
    (a sleeper's deadline or the session's next wake-up). Every bound here is a safety net
    in real time, never part of what is measured."""
    deadline = time.monotonic() + start_timeout
    ready = started or (lambda: clock.sleeping() > 0)
    while not ready():
        if time.monotonic() > deadline or session.closed:
            raise RuntimeError(f"the producer did not start within {start_timeout} s")
        await asyncio.sleep(0.005)
    log = FrameLog(start=clock.now())
    woken: list[asyncio.Task[Any]] = []
    for _ in range(max_events):
        await clock.settle(woken)
        for _ in range(1000):  # frames due now: each round steps a session at most once
            if not await worker.tick():
                break
        now = clock.now()
        log.times.extend([now] * (session.frames_emitted - len(log.times)))
        log.progress.append((now, progress()))
        if session.finished or session.closed:
            log.end = now
            return log
        events = [t for t in (clock.next_deadline(), session.next_wakeup(now)) if t is not None]
        if not events:
            raise RuntimeError(f"the session waits for nothing at {now - log.start:.3f} s of virtual time")
        woken = clock.advance_to(min(events))
    raise RuntimeError(f"the session did not finish within {max_events} events")

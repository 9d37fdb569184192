"""``FrameQueue``: a bounded, thread-safe queue between the inference thread and consumers.

Drop policy: when full, the **oldest** item is discarded (and counted), so a slow consumer
skips frames and always gets the newest ones; it never builds latency and never blocks the
producer. Consumers read with ``await get()`` on an event loop or ``get_blocking()`` in a
thread; ``close()`` ends the stream (``EndOfStream``) or fails it with an exception.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, Callable, Generic, TypeVar

__all__ = ["FrameQueue", "EndOfStream"]

T = TypeVar("T")


class EndOfStream(Exception):
    """The queue was closed and is empty."""


class FrameQueue(Generic[T]):
    """Bounded drop-oldest queue fed from any thread."""

    def __init__(self, maxsize: int = 2, loop: asyncio.AbstractEventLoop | None = None,
                 on_drop: Callable[[int], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self._on_drop = on_drop

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        """Add an item (from any thread); drops the oldest one when full."""
        dropped = False
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
                dropped = True
            self._items.append(item)
            self._cond.notify_all()
        if dropped and self._on_drop is not None:
            self._on_drop(1)
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        """End the stream after the queued items (or fail it with ``error``)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._set_waiter)
        except RuntimeError:  # loop closed meanwhile
            pass

    def _set_waiter(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _pop(self) -> Any:
        """An item, or raise EndOfStream/the close error; None when empty and open."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            if self._error is not None:
                raise self._error
            raise EndOfStream
        return _EMPTY

    def get_nowait(self) -> T | None:
        with self._cond:
            item = self._pop()
        return None if item is _EMPTY else item

    def get_blocking(self, timeout: float | None = None) -> T | None:
        """Wait for an item in a thread; None on timeout."""
        with self._cond:
            item = self._pop()
            if item is _EMPTY:
                self._cond.wait(timeout)
                item = self._pop()
        return None if item is _EMPTY else item

    async def get(self) -> T:
        """Wait for an item on the event loop this queue was made for."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                item = self._pop()
                if item is _EMPTY:
                    self._waiter = self._loop.create_future()
                    waiter = self._waiter
            if item is not _EMPTY:
                return item
            try:
                await waiter
            finally:
                self._waiter = None


_EMPTY = object()

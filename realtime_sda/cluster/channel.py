"""A websocket stand-in between a front door and a worker: the worker's
:class:`~realtime_sda.server.client.Client` (or a broadcast pusher) reads the page's messages
from it and writes its answers to it exactly as to a websocket, while the front door moves
them over Ray calls. Bounded both ways; a channel nobody polls expires (its page is gone)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["Channel", "ChannelClosed"]


class ChannelClosed(Exception):
    """Raised by ``send`` on a closed channel (as a websocket raises ConnectionClosed)."""


class Channel:
    """``async for raw in channel`` yields the page's messages; ``await channel.send(text)``
    queues an answer; the front door calls :meth:`put` and :meth:`take`."""

    def __init__(self, name: str, max_inbox: int = 64, max_outbox: int = 256) -> None:
        self.name = name
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(max_inbox)
        self.outbox: deque[str] = deque(maxlen=max_outbox)  # oldest dropped (stale stats)
        self._out_ready = asyncio.Event()
        self.closed = False
        self.close_code: int | None = None
        self.last_poll = time.monotonic()

    # ---- the worker's side (what a websocket offers) --------------------------------------
    def __aiter__(self) -> "Channel":
        return self

    async def __anext__(self) -> str | bytes:
        item = await self.inbox.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def send(self, text: str) -> None:
        if self.closed:
            raise ChannelClosed(self.name)
        self.outbox.append(text)
        self._out_ready.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the channel: the reader stops, the front door closes the page's socket."""
        if self.closed:
            return
        self.closed, self.close_code = True, code
        self._out_ready.set()
        self._end_inbox()

    def _end_inbox(self) -> None:
        try:
            self.inbox.put_nowait(None)
        except asyncio.QueueFull:
            self.inbox.get_nowait()
            self.inbox.put_nowait(None)

    # ---- the front door's side ------------------------------------------------------------
    async def put(self, raw: str | bytes) -> None:
        """A page message in (waits while the inbox is full: back pressure on the page)."""
        if not self.closed:
            await self.inbox.put(raw)

    async def take(self, timeout: float) -> tuple[list[str], bool]:
        """(answers waiting, closed), waiting up to ``timeout`` s for at least one."""
        self.last_poll = time.monotonic()
        if not self.outbox and not self.closed:
            self._out_ready.clear()
            try:
                await asyncio.wait_for(self._out_ready.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self.last_poll = time.monotonic()
        out = list(self.outbox)
        self.outbox.clear()
        return out, self.closed

    def hang_up(self) -> None:
        """The page went away: end the reader (the worker then releases the session)."""
        self.closed = True
        self._out_ready.set()
        self._end_inbox()

    def idle_for(self) -> float:
        """Seconds since the front door last polled."""
        return time.monotonic() - self.last_poll

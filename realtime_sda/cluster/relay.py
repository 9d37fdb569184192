"""Broadcast on a cluster: worker 0 makes the broadcast avatar's frames once and keeps the
latest in a :class:`FrameRing`; every other worker relays them (:class:`RelayedSession`, a
session whose ``frames()`` pulls them over Ray) into a local
:class:`~realtime_sda.server.broadcast.FrameHub` that feeds its own viewers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ..server.broadcast import FrameHub

__all__ = ["FrameRing", "RelayedSession", "relay_hub"]

log = logging.getLogger(__name__)


class FrameRing:
    """The latest broadcast frames with sequence numbers, for relays to pull (added to the
    broadcast's hub as if it were a viewer: ``put`` and ``close``)."""

    def __init__(self, size: int = 25) -> None:
        self.frames: deque[tuple[int, Any]] = deque(maxlen=size)
        self.seq = 0
        self._new = asyncio.Event()

    def put(self, frame: Any) -> None:
        self.seq += 1
        self.frames.append((self.seq, frame))
        self._new.set()

    def close(self) -> None:
        self._new.set()

    async def since(self, after: int, timeout: float) -> tuple[int, list[Any]]:
        """(latest sequence number, frames newer than ``after``), waiting up to ``timeout``;
        ``after`` < 0: only the latest number (a relay starting from now)."""
        if after < 0:
            return self.seq, []
        if self.seq <= after:
            self._new.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new.wait(), timeout)
        if after > self.seq:  # the source restarted: its numbers began again
            after = 0
        return self.seq, [f for s, f in self.frames if s > after]


class RelayedSession:
    """The broadcast session as seen from another worker: its frames, pulled from the source
    worker while this worker has viewers (``viewers()`` says), re-pulled after the source is
    restarted."""

    def __init__(self, source_name: str, namespace: str, viewers: Any) -> None:
        self.source_name = source_name
        self.namespace = namespace
        self.viewers = viewers
        self.relayed = 0
        self.errors = 0

    async def frames(self) -> AsyncIterator[Any]:
        import ray

        source = None
        after = 0
        while True:
            if not self.viewers():
                await asyncio.sleep(0.1)
                continue
            try:
                if source is None:
                    source = await asyncio.to_thread(ray.get_actor, self.source_name, namespace=self.namespace)
                    after = (await source.broadcast_frames.remote(-1, 0.0))[0]  # from now on
                latest: int
                frames: list[Any]
                latest, frames = await asyncio.wait_for(source.broadcast_frames.remote(after, 1.0), 5.0)
            except (ray.exceptions.RayError, ValueError, asyncio.TimeoutError) as exc:  # source lost or restarting
                self.errors += 1
                log.debug("broadcast relay: %r", exc)
                source = None
                await asyncio.sleep(0.5)
                continue
            after = latest
            for frame in frames:
                self.relayed += 1
                yield frame


def relay_hub(source_name: str, namespace: str, name: str) -> FrameHub:
    """A started hub whose frames are the broadcast source's, relayed while it has viewers."""
    holder: list[FrameHub] = []
    session = RelayedSession(source_name, namespace, lambda: holder[0].viewers > 0)
    hub = FrameHub(session, f"{name}-relay")
    holder.append(hub)
    hub.start()
    return hub

"""Fan-out of one avatar session's frames to any number of viewers, and the broadcast
avatar: one session driven by pushed audio (``/push``) or an audio file, watched by many."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..streaming.tasks import cancel_and_wait
from .tracks import ViewerFeed

__all__ = ["FrameHub", "Broadcast", "FilePlayer"]

log = logging.getLogger(__name__)


class FrameHub:
    """Reads one session's frames (a named task) and hands each to every registered viewer
    feed. ``ViewerFeed.put`` never blocks, so one slow viewer cannot hold up the others."""

    def __init__(self, session: Any, name: str) -> None:
        self.session = session
        self.name = name
        self._feeds: set[ViewerFeed] = set()
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        self.last_latency_s = float("nan")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name}-fanout")

    def add(self, feed: ViewerFeed) -> None:
        self._feeds.add(feed)

    def remove(self, feed: ViewerFeed) -> None:
        self._feeds.discard(feed)

    @property
    def viewers(self) -> int:
        return len(self._feeds)

    async def _run(self) -> None:
        try:
            async for frame in self.session.frames():
                self.frames += 1
                self.last_latency_s = float(frame.latency_s)
                for feed in tuple(self._feeds):
                    feed.put(frame)
        finally:
            for feed in tuple(self._feeds):
                feed.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel the fan-out task (bounded) and end every viewer's tracks."""
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout)
        for feed in tuple(self._feeds):
            feed.close()
        self._feeds.clear()


class FilePlayer:
    """Pushes an audio file into a session in real time (20 ms chunks, looping)."""

    def __init__(self, session: Any, path: Path, loop: bool = True) -> None:
        from ..media.audio import decode_audio, to_float_mono

        signal, rate = decode_audio(path)
        self.signal = to_float_mono(signal)
        self.rate = int(rate)
        self.session = session
        self.loop = loop
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="broadcast-file")

    async def _run(self) -> None:
        chunk = max(self.rate // 50, 1)
        start, sent = time.monotonic(), 0
        while True:
            for pos in range(0, len(self.signal), chunk):
                self.session.push_audio(self.signal[pos : pos + chunk], self.rate)
                sent += min(chunk, len(self.signal) - pos)
                wait = start + sent / self.rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if not self.loop:
                return

    async def close(self, timeout: float = 5.0) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout)


class Broadcast:
    """ONE avatar session that many viewers watch; fed by ``/push`` clients or a file."""

    def __init__(self, session: Any, audio_file: Path | None = None) -> None:
        self.session = session
        self.hub = FrameHub(session, "broadcast")
        self.player = FilePlayer(session, audio_file) if audio_file is not None else None
        self.pusher_active = False

    def start(self) -> None:
        self.hub.start()
        if self.player is not None:
            self.player.start()

    def push(self, pcm: np.ndarray, rate: int) -> None:
        self.session.push_audio(pcm, rate)

    async def close(self, timeout: float = 5.0) -> None:
        if self.player is not None:
            await self.player.close(timeout)
        await self.hub.close(timeout)
        await asyncio.wait_for(self.session.close(), timeout)

"""``MemorySink``: keeps every frame it receives (for programs and tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..frames import VideoFrame
from .base import Sink

if TYPE_CHECKING:
    from ..stats import StreamStats

__all__ = ["MemorySink"]


class MemorySink(Sink):
    """Collects frames in a list; ``limit`` bounds how many are kept (oldest dropped)."""

    name = "memory"

    def __init__(self, queue_size: int = 1024, limit: int | None = None) -> None:
        self.queue_size = queue_size
        self.limit = limit
        self.frames: list[VideoFrame] = []

    def write(self, frame: VideoFrame, stats: "StreamStats") -> None:
        self.frames.append(frame)
        if self.limit is not None and len(self.frames) > self.limit:
            del self.frames[0]

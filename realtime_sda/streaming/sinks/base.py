"""``Sink`` (what a frame consumer implements) and ``SinkRunner`` (its thread and queue)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..frames import VideoFrame
from ..queues import EndOfStream, FrameQueue

if TYPE_CHECKING:
    from ..session import AvatarSession
    from ..stats import StreamStats

__all__ = ["Sink", "SinkRunner"]


class Sink:
    """A frame consumer. ``open`` and ``close`` run on the sink's own thread (GUI toolkits
    and encoders want one thread); ``prepare`` runs on the caller's thread first, to fail
    early with a clear error (e.g. no virtual camera). ``queue_size`` bounds its queue."""

    name = "sink"
    queue_size = 2

    def prepare(self, session: "AvatarSession") -> None:
        """Check resources before streaming starts (caller's thread)."""

    def open(self, session: "AvatarSession") -> None:
        """Acquire resources (sink thread)."""

    def write(self, frame: VideoFrame, stats: "StreamStats") -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (sink thread); called once, also after errors."""

    @property
    def stop_requested(self) -> bool:
        """True when the sink wants the stream to end (e.g. its window was closed)."""
        return False


class SinkRunner:
    """Runs one sink on a thread, reading a bounded drop-oldest subscription of a session."""

    def __init__(self, sink: Sink, session: "AvatarSession") -> None:
        self.sink = sink
        self.session = session
        self.queue: FrameQueue[VideoFrame] = session.subscribe(max(1, int(sink.queue_size)))
        self.error: BaseException | None = None
        self.frames_written = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"sink-{sink.name}-{session.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def stop(self) -> None:
        """Ask the thread to finish (it closes the sink); join it with :meth:`join`."""
        self._stop.set()
        self.session.unsubscribe(self.queue)

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        opened = False
        try:
            self.sink.open(self.session)
            opened = True
            while not self._stop.is_set() and not self.sink.stop_requested:
                try:
                    frame = self.queue.get_blocking(0.1)
                except EndOfStream:
                    break
                if frame is not None:
                    self.sink.write(frame, self.session.stats)
                    self.frames_written += 1
        except BaseException as exc:  # reported by the pipeline; other sinks go on
            self.error = exc
        finally:
            try:
                if opened:
                    self.sink.close()
            except BaseException as exc:
                self.error = self.error or exc

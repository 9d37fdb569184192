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
    external_thread = False  # True: run by another thread through attach()/run_here()

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

    def attach(self, runner: "SinkRunner") -> None:
        """Receive the runner (only for ``external_thread`` sinks)."""
        raise NotImplementedError(f"{type(self).__name__} does not run on an external thread")


class SinkRunner:
    """Runs one sink on a thread, reading a bounded drop-oldest subscription of a session.

    A sink with ``external_thread = True`` gets no thread: the pipeline hands the runner to
    ``sink.attach(runner)`` and some other thread (e.g. the main thread, which GUI toolkits
    want) calls :meth:`run_here`.
    """

    def __init__(self, sink: Sink, session: "AvatarSession") -> None:
        self.sink = sink
        self.session = session
        self.name = f"sink-{sink.name}-{session.id}"
        self.queue: FrameQueue[VideoFrame] = session.subscribe(max(1, int(sink.queue_size)))
        self.error: BaseException | None = None
        self.frames_written = 0
        self._stop = threading.Event()
        self._finished = threading.Event()
        #: set once the sink is open (window shown, file created), or when it failed to open
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self.thread = None if sink.external_thread else threading.Thread(target=self.run_here, name=self.name, daemon=True)

    def start(self) -> None:
        """Start the runner's thread, or hand the runner to an externally run sink."""
        if self.thread is not None:
            self.thread.start()
        else:
            self.sink.attach(self)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait_done(self, timeout: float | None = None) -> bool:
        """Block (a thread, not the event loop) until the runner has finished; False on timeout."""
        return self._finished.wait(timeout)

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def stop(self) -> None:
        """Ask the runner to finish (it closes the sink); :attr:`done` tells when it has."""
        self._stop.set()
        self.session.unsubscribe(self.queue)
        with self._lock:
            if not self._started:  # never ran (an external host that did not start it)
                self._started = True
                self.ready.set()
                self._finished.set()

    def run_here(self) -> None:
        """Run the sink in the calling thread until the stream ends or :meth:`stop`."""
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            self._run()
        finally:
            self.ready.set()
            self._finished.set()

    def _run(self) -> None:
        opened = False
        try:
            self.sink.open(self.session)
            opened = True
            self.ready.set()
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

"""``StreamPipeline``: source -> (resampler -> ring buffer in the session) -> inference worker
-> fan-out to sinks, with one owner for every task and thread.

Each sink reads its own bounded drop-oldest subscription on its own thread, so a slow sink
skips frames without slowing the others. :meth:`StreamPipeline.stop` cancels the source task
and joins every sink thread, each with a timeout; nothing is left running.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from .sinks.base import Sink, SinkRunner
from .stats import StatsSnapshot
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from .session import AvatarSession

__all__ = ["StreamPipeline", "Source"]


class Source(Protocol):
    async def run(self, session: "AvatarSession") -> None: ...


class StreamPipeline:
    """Wire a source and sinks to a session. ``close_session``: close it when stopping;
    ``open_timeout``: how long to wait for the sinks to open before the source starts."""

    def __init__(
        self,
        session: "AvatarSession",
        source: Source | None = None,
        sinks: Sequence[Sink] = (),
        close_session: bool = True,
        open_timeout: float = 20.0,
    ) -> None:
        self.session = session
        self.source = source
        self.sinks = list(sinks)
        self.close_session = close_session
        self.open_timeout = open_timeout
        self.runners: list[SinkRunner] = []
        self._source_task: asyncio.Task[Any] | None = None
        self._stopped = False

    async def start(self) -> None:
        """Prepare every sink (clear errors before anything runs), then start them and the source."""
        for sink in self.sinks:
            sink.prepare(self.session)
        self.runners = [SinkRunner(sink, self.session) for sink in self.sinks]
        for r in self.runners:
            r.start()
        # the source starts once every sink is open (a window shown, a file created), so no
        # audio is consumed before anyone can see or record the frames
        deadline = time.monotonic() + self.open_timeout
        for r in self.runners:  # waited for in a thread: the sinks signal threading events
            await asyncio.to_thread(r.ready.wait, max(deadline - time.monotonic(), 0.0))
        if self.source is not None:
            self._source_task = asyncio.create_task(self.source.run(self.session), name=f"sda-source-{self.session.id}")

    @property
    def stop_requested(self) -> bool:
        return any(r.sink.stop_requested for r in self.runners)

    def errors(self) -> list[BaseException]:
        out = [r.error for r in self.runners if r.error is not None]
        t = self._source_task
        if t is not None and t.done() and not t.cancelled() and t.exception() is not None:
            out.insert(0, t.exception())  # type: ignore[arg-type]
        if self.session.error is not None:
            out.append(self.session.error)
        return out

    async def run(
        self, duration: float | None = None, poll_s: float = 0.02, on_started: Callable[[], None] | None = None
    ) -> StatsSnapshot:
        """Start (then call ``on_started``), then wait until the stream ends (source done and last frame consumed), a sink
        asks to stop, an error occurs, or ``duration`` seconds pass; always stops cleanly.
        Raises the first source/sink error."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        if on_started is not None:
            on_started()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while True:
                if self.errors() or self.stop_requested:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if (self.session.finished or self.session.closed) and all(r.done for r in self.runners):
                    break
                await asyncio.sleep(poll_s)
        finally:
            await self.stop()
        errors = self.errors()
        if errors:
            raise errors[0]
        return self.session.stats.snapshot()

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel the source, end and join the sink threads, close the session (if owned)."""
        if self._stopped:
            return
        self._stopped = True
        await cancel_and_wait(self._source_task, timeout)  # its error is reported through errors()
        if self.close_session:
            await self.session.close()
        for r in self.runners:
            r.stop()
        deadline = time.monotonic() + timeout
        for r in self.runners:
            await asyncio.to_thread(r.wait_done, max(deadline - time.monotonic(), 0.0))
        stuck = [r.name for r in self.runners if not r.done]
        if stuck:
            raise TimeoutError(f"sink thread(s) {', '.join(stuck)} did not stop within {timeout} s")

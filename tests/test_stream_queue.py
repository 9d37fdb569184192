"""FrameQueue: bounded, drop-oldest, thread-safe; async and blocking consumers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from realtime_sda.streaming.queues import EndOfStream, FrameQueue


def test_drop_oldest_and_count() -> None:
    drops = []
    q: FrameQueue[int] = FrameQueue(3, on_drop=drops.append)
    for k in range(10):
        q.put(k)
    assert len(q) == 3 and q.dropped == 7 and sum(drops) == 7
    assert [q.get_nowait() for _ in range(3)] == [7, 8, 9]  # the newest survive
    assert q.get_nowait() is None
    q.close()
    with pytest.raises(EndOfStream):
        q.get_nowait()
    q.put(1)  # ignored after close
    with pytest.raises(ValueError):
        FrameQueue(0)


def test_async_consumer_fed_from_a_thread_and_error_close() -> None:
    async def main():
        q: FrameQueue[int] = FrameQueue(100, asyncio.get_running_loop())

        def produce():
            for k in range(50):
                q.put(k)
            q.close(RuntimeError("boom"))

        t = threading.Thread(target=produce, name="producer")
        t.start()
        got = []
        with pytest.raises(RuntimeError, match="boom"):
            while True:
                got.append(await asyncio.wait_for(q.get(), 5))
        t.join()
        return got

    assert asyncio.run(main()) == list(range(50))


def test_blocking_consumer_times_out_then_ends() -> None:
    q: FrameQueue[int] = FrameQueue(2)
    assert q.get_blocking(0.01) is None
    threading.Timer(0.05, q.put, args=(5,)).start()
    assert q.get_blocking(2.0) == 5
    threading.Timer(0.05, q.close).start()
    with pytest.raises(EndOfStream):  # woken by close, nothing queued
        q.get_blocking(2.0)

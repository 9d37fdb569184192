"""Cancellation that cleans up: ``cancel_and_wait`` re-raises only the caller's own new
cancellation, so cleanup in a cancelled task's ``finally`` runs to its end (a cancelled
pipeline, a server stopped with live peers, a server whose owner task is cancelled)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from realtime_sda.streaming import FileSource, InferenceWorker, StreamPipeline
from realtime_sda.streaming.sinks import MemorySink, RecorderSink
from realtime_sda.streaming.tasks import cancel_and_wait
from testsupport.waiting import eventually


# ---- the helper ------------------------------------------------------------------------------
def test_cancel_and_wait_reraises_only_the_callers_own_new_cancellation(caplog) -> None:
    async def main():
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow_cleanup():
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                entered.set()
                await release.wait()  # cleanup that takes a while
                return "cleaned"

        # 1. the caller is cancelled while it waits: re-raised; the task goes on (shielded)
        task = asyncio.create_task(slow_cleanup())
        await asyncio.sleep(0)
        caller = asyncio.create_task(cancel_and_wait(task, timeout=60))
        await entered.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert not task.done()
        release.set()
        assert await task == "cleaned"

        # 2. cleanup in the finally of a cancelled task: the pending cancellation does not stop it
        steps: list[str] = []

        async def owner():
            inner = asyncio.create_task(asyncio.Event().wait())
            try:
                await asyncio.Event().wait()
            finally:
                await cancel_and_wait(inner, timeout=60)
                steps.append("inner cancelled" if inner.cancelled() else "inner running")
                await cancel_and_wait(failing, timeout=60)  # its own error is swallowed
                steps.append("after the failing task")

        async def fail_on_cancel():
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise ValueError("the task's own error") from None

        failing = asyncio.create_task(fail_on_cancel())
        own = asyncio.create_task(owner())
        await asyncio.sleep(0)
        own.cancel()
        with pytest.raises(asyncio.CancelledError):
            await own  # the owner's own cancellation still ends it, after the cleanup
        assert steps == ["inner cancelled", "after the failing task"]
        assert isinstance(failing.exception(), ValueError)

        # 3. a task that ignores cancellation: a warning after the timeout, no exception
        stubborn_release = asyncio.Event()

        async def stubborn():
            while not stubborn_release.is_set():
                try:
                    await stubborn_release.wait()
                except asyncio.CancelledError:
                    pass

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        with caplog.at_level(logging.WARNING, logger="realtime_sda.streaming.tasks"):
            await cancel_and_wait(task, timeout=0.05)
        assert "did not end" in caplog.text
        stubborn_release.set()
        await task
        await cancel_and_wait(None)  # nothing to do

    asyncio.run(main())


# ---- a cancelled pipeline ----------------------------------------------------------------------
def _wav(path: Path, rate: int, seconds: float) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    sig = 0.4 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((sig * 32767).astype(np.int16).tobytes())
    return path


@pytest.mark.usefixtures("one_torch_thread")
def test_cancelled_pipeline_closes_its_session_and_joins_its_sinks(tiny_model, tmp_path) -> None:
    wav = _wav(tmp_path / "long.wav", 16000, 30.0)
    h, w = tiny_model.config.img_size
    before = set(threading.enumerate())

    async def main():
        tasks_before = asyncio.all_tasks()
        async with InferenceWorker(tiny_model) as worker:
            session = await worker.open_session(torch.zeros(1, 3, h, w), seed=1)
            memory = MemorySink()
            pipe = StreamPipeline(session, FileSource(wav), [memory, RecorderSink(tmp_path / "x.mp4")])
            run = asyncio.create_task(pipe.run())
            await eventually(lambda: len(memory.frames) >= 3, "three frames reached the sink")
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            # run()'s cleanup went to its end, in the cancelled task
            assert session.closed
            assert [r.name for r in pipe.runners if not r.done] == []
            assert not any(t.name.startswith("sink-") for t in threading.enumerate())
        assert not worker.running  # stopped on leaving the block
        assert asyncio.all_tasks() == tasks_before

    asyncio.run(main())
    assert set(threading.enumerate()) == before
    assert (tmp_path / "x.mp4").stat().st_size > 0  # the recorder was closed (its file finished)


# ---- a server stopped with live peers ---------------------------------------------------------
def _own_threads() -> list[str]:
    """Threads other than asyncio's default executor (a bounded pool aiortc encodes in)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _level() -> tuple[list[str], int, int]:
    return _own_threads(), len(asyncio.all_tasks()), _fds()


async def _back_to(level: tuple[list[str], int, int]) -> None:
    await eventually(lambda: _own_threads() == level[0], f"threads back to {level[0]} (now {_own_threads()})")
    await eventually(lambda: len(asyncio.all_tasks()) <= level[1],
                     f"tasks back to {level[1]} (now {sorted(t.get_name() for t in asyncio.all_tasks())})")
    await eventually(lambda: _fds() <= level[2], f"open fds back to {level[2]} (now {_fds()})")


def test_server_stopped_with_live_peers_leaves_nothing(tiny_model) -> None:
    """Stopping the server cancels the handlers of clients that do not answer the close
    handshake (reading paused, as a frozen tab); each client's peer and session still close."""
    pytest.importorskip("aiortc")
    from realtime_sda.server import AvatarServer, ServerConfig
    from testsupport.loopback_client import LoopbackViewer

    still = torch.zeros(1, 3, *tiny_model.config.img_size)
    signal = 0.3 * np.random.default_rng(0).standard_normal(48000 * 60).astype(np.float32)

    async def cycle(frozen: bool) -> None:
        srv = await AvatarServer(tiny_model, ServerConfig(port=0), still).start()
        viewer = LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", signal=signal, keep_images=False)
        await viewer.connect()
        await viewer.wait_frames(3)
        clients = list(srv.clients)
        peers = [c.peer for c in clients]
        sessions = srv.worker.sessions
        assert len(clients) == 1 and peers[0] is not None and len(sessions) == 1
        if frozen:
            viewer.ws.transport.pause_reading()  # the close handshake cannot finish within 1 s
        await srv.stop(timeout=1.0)
        assert not srv.clients and all(c.peer is None for c in clients)
        assert all(p.pc.connectionState == "closed" for p in peers)
        assert all(s.closed for s in sessions)
        if frozen:
            viewer.ws.transport.resume_reading()
        await viewer.close()

    async def main():
        await cycle(frozen=False)  # warm-up: codecs, executor threads, lazy imports
        start = _level()
        await cycle(frozen=True)
        await _back_to(start)

    asyncio.run(main())


def test_server_whose_owner_task_is_cancelled_leaves_nothing(tiny_model, tmp_path) -> None:
    """``async with AvatarServer(...)`` in a task that is cancelled (Ctrl-C) with a broadcast
    playing a file and a viewer watching: every step of the stop still runs."""
    pytest.importorskip("aiortc")
    from realtime_sda.server import AvatarServer, ServerConfig
    from testsupport.loopback_client import LoopbackViewer

    still = torch.zeros(1, 3, *tiny_model.config.img_size)
    audio = _wav(tmp_path / "broadcast.wav", 16000, 5.0)
    config = ServerConfig(port=0, broadcast=True, broadcast_audio=audio)

    async def main():
        start = _level()
        up: asyncio.Queue = asyncio.Queue()
        servers: list = []

        async def serve():
            async with AvatarServer(tiny_model, config, still) as srv:
                servers.append((srv, srv.worker, srv.broadcast))
                await up.put(srv.port)
                await asyncio.Event().wait()

        owner = asyncio.create_task(serve())
        port = await up.get()
        viewer = LoopbackViewer(f"ws://127.0.0.1:{port}/ws", mode="watch", keep_images=False)
        await viewer.connect()
        await viewer.wait_frames(3)
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        srv, worker, broadcast = servers[0]
        assert srv.worker is None and srv.broadcast is None and broadcast.session.closed
        assert not worker.sessions
        await viewer.close()
        await _back_to(start)

    asyncio.run(main())

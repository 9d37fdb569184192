"""Many connects/disconnects and hostile messages, while a pusher floods ``/push`` and photo
uploads are in flight, leave the server as it was (memory, threads, file descriptors,
tasks), and so does ``AvatarServer.stop`` with peers still connected. A healthy session
watches throughout; how smoothly (fps, gaps) is ``benchmarks/hostile.py``'s to measure."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.media.heap import release_memory  # noqa: E402
from realtime_sda.server import AvatarServer, Limits, ServerConfig  # noqa: E402
from testsupport.hostile import small_faceless_png  # noqa: E402
from testsupport.loopback_client import LoopbackViewer  # noqa: E402

TOKEN = "churn-token"
CYCLES = 50
RSS_TOLERANCE_MB = 40


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _own_threads() -> list[str]:
    """Threads other than asyncio's default executor (a bounded pool aiortc encodes in)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _flood_push(port: int, counts: dict[str, int]) -> None:
    """A pusher sending 1 s of audio every 50 ms (20x real time) until cancelled: the queue
    fills within seconds, then every message is refused with queue_full."""
    from websockets.asyncio.client import connect

    pcm = (0.2 * np.random.default_rng(5).standard_normal(16000) * 32767).astype("<i2").tobytes()
    async with connect(f"ws://127.0.0.1:{port}/push?token={TOKEN}") as ws:
        await ws.send(json.dumps({"rate": 16000, "channels": 1}))
        while True:
            await ws.send(pcm)
            counts["sent"] += 1
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    counts[json.loads(await asyncio.wait_for(ws.recv(), 0.01))["code"]] += 1
            await asyncio.sleep(0.05)


async def _upload_loop(port: int, counts: dict[str, int]) -> None:
    """Photo uploads one after another (no face: each is decoded and searched in full)."""
    from websockets.asyncio.client import connect

    k = 0
    while True:
        async with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}") as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(small_faceless_png(k))
            counts[json.loads(await asyncio.wait_for(ws.recv(), 60))["code"]] += 1
        k += 1


def _http_get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


_HUGE_CLIENT = """
import json, sys
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
with connect(sys.argv[1], max_size=2**16) as ws:
    assert json.loads(ws.recv())["type"] == "ready"
    try:
        ws.send(b"\\x00" * int(sys.argv[2]))
        ws.recv(timeout=10)
    except ConnectionClosed:
        pass
    print(ws.protocol.close_rcvd.code)
"""


async def _huge_message(url: str) -> None:
    """Send one message over the size limit from another process (as another machine
    would): the server closes that connection with 1009 and nothing else."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HUGE_CLIENT, url, str(Limits().max_message_bytes + 10),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and out.strip() == b"1009", (out, err[-500:])


async def _ws_cycle(port: int, kind: int) -> None:
    """One websocket client that misbehaves in one of several ways, then leaves."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    url = f"ws://127.0.0.1:{port}/ws"
    if kind == 3:  # wrong origin (refused at the handshake), then wrong token
        with pytest.raises(InvalidStatus):
            await connect(url + f"?token={TOKEN}", additional_headers={"Origin": "http://evil.example"})
        async with connect(url + "?token=guess") as ws:
            await ws.send(json.dumps({"type": "hello", "token": "guess2"}))
            assert json.loads(await ws.recv())["code"] == "bad_token"
        return
    if kind == 4:  # path traversal over plain HTTP
        for path in ("/../pyproject.toml", "/%2e%2e/%2e%2e/etc/passwd"):
            assert await asyncio.to_thread(_http_get, port, path) == 404
        return
    async with connect(url + f"?token={TOKEN}") as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        if kind == 1:
            for bad in ("{not json", json.dumps({"type": "offer", "sdp": "v=0\r\nm=nonsense\r\n"}), "[]" * 1000):
                await ws.send(bad)
                assert json.loads(await ws.recv())["type"] == "error"
        elif kind == 2:
            await ws.send(b"\xff\xd8\xff\xe0 not really a jpeg")
            assert json.loads(await ws.recv())["code"] == "bad_image"
        await _huge_message(url + f"?token={TOKEN}")


async def _peer_cycle(port: int, abrupt: bool) -> None:
    """A full WebRTC viewer; ``abrupt``: its websocket is cut like a closed tab."""
    rng = np.random.default_rng(0)
    viewer = LoopbackViewer(f"ws://127.0.0.1:{port}/ws?token={TOKEN}",
                            signal=0.3 * rng.standard_normal(48000).astype(np.float32), keep_images=False)
    await viewer.connect()
    await viewer.wait_frames(3, timeout=20)
    if abrupt:
        viewer.ws.transport.abort()  # no close handshake, no "stop": the server must notice
    await viewer.close()


@pytest.mark.slow
def test_churn_and_hostile_clients_leave_no_trace(tiny_model):
    from collections import Counter

    still = torch.zeros(1, 3, *tiny_model.config.img_size)
    config = ServerConfig(port=0, token=TOKEN, broadcast=True, limits=Limits(max_sessions=8))

    def state() -> tuple[float, list[str], int, int]:
        gc.collect()
        release_memory()  # pages glibc keeps for reuse are not a leak (the server hands them back too)
        return _rss_mb(), _own_threads(), _fds(), len(asyncio.all_tasks())

    async def quiet(level: int) -> None:
        """Wait (bounded) until closing peers finished their last RTCP/ICE tasks."""
        for _ in range(100):
            if len(asyncio.all_tasks()) <= level:
                return
            await asyncio.sleep(0.05)

    async def main():
        start = state()  # before the server: what stop() must come back to
        srv = AvatarServer(tiny_model, config, still)
        await srv.start()
        background: list[asyncio.Task] = []
        pushed, uploaded = Counter(), Counter()
        try:
            port = srv.port
            rng = np.random.default_rng(1)
            healthy = LoopbackViewer(f"ws://127.0.0.1:{port}/ws?token={TOKEN}",
                                     signal=0.3 * rng.standard_normal(48000 * 120).astype(np.float32), keep_images=False)
            await healthy.connect()
            await healthy.wait_frames(10)
            background = [asyncio.create_task(_flood_push(port, pushed), name="churn-pusher"),
                          asyncio.create_task(_upload_loop(port, uploaded), name="churn-uploads")]
            for k in range(5):  # warm-up: codecs, executor threads, allocator pools
                await _ws_cycle(port, k)
            await _peer_cycle(port, abrupt=False)
            await _peer_cycle(port, abrupt=True)

            async def settle() -> None:
                for _ in range(200):  # the healthy viewer, the uploader's connection at most
                    if len(srv.clients) <= 2 and len(srv.worker.sessions) == 2:  # + the broadcast's
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"{len(srv.clients)} clients, {len(srv.worker.sessions)} sessions left")

            await settle()
            # the pusher's flood fills the broadcast's queue to its bound (60 s of audio, memory
            # that is meant to be held): measure from there, so what grows is what leaks
            for _ in range(400):
                if srv.broadcast.session.buffered_seconds() > 55.0:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the flood did not fill the queue: {srv.broadcast.session.buffered_seconds():.1f} s")
            before = state()
            frames0, t0 = len(healthy.video.times), time.monotonic()
            errors0 = sum(m.get("type") == "error" for m in healthy.messages)
            for i in range(CYCLES):
                if i % 5 == 0:
                    await _peer_cycle(port, abrupt=(i % 10 == 0))
                else:
                    await _ws_cycle(port, i % 5)
            await settle()
            frames1, t1 = len(healthy.video.times), time.monotonic()
            gap = float(np.diff(healthy.video.times[frames0 - 1 : frames1]).max())
            await quiet(before[3])
            after = state()
            leftover = sorted(t.get_name() + ":" + getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())
            errors1 = sum(m.get("type") == "error" for m in healthy.messages)
            # stop with peers connected: the healthy viewer, one more, the pusher, an upload
            extra = LoopbackViewer(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", keep_images=False)
            await extra.connect()
            await extra.wait_frames(3, timeout=20)
            await srv.stop()
            for task in background:
                task.cancel()
            for viewer in (healthy, extra):
                with contextlib.suppress(Exception):
                    await viewer.close()
            for task in background:
                with contextlib.suppress(BaseException):
                    await task
            background = []
            await quiet(start[3])
            for _ in range(50):  # threads being joined (a pool shut down without waiting)
                if _own_threads() == start[1]:
                    break
                await asyncio.sleep(0.1)
            end = state()
            return (start, before, after, end, (frames1 - frames0) / (t1 - t0), errors1 - errors0, t1 - t0, gap,
                    leftover, dict(pushed), dict(uploaded))
        finally:
            for task in background:
                task.cancel()
            await srv.stop()

    start, before, after, end, healthy_fps, healthy_errors, seconds, gap, leftover, pushed, uploaded = asyncio.run(main())
    print(f"{CYCLES} cycles in {seconds:.1f} s; RSS {before[0]:.1f} -> {after[0]:.1f} MB; threads {before[1]} -> {after[1]}; "
          f"fds {before[2]} -> {after[2]}; tasks {before[3]} -> {after[3]}; healthy session {healthy_fps:.1f} fps, "
          f"longest gap {1000 * gap:.0f} ms; pusher {pushed}; uploads {uploaded}")
    print(f"after stop() with peers connected: threads {start[1]} -> {end[1]}; fds {start[2]} -> {end[2]}; "
          f"tasks {start[3]} -> {end[3]}")
    assert after[1] == before[1], (before[1], after[1])
    assert after[2] <= before[2] + 2, (before[2], after[2])  # + the uploader's connection (both ends) in flight
    assert after[3] <= before[3], (before[3], after[3], leftover)
    assert after[0] - before[0] < RSS_TOLERANCE_MB, (before[0], after[0])
    assert healthy_errors == 0 and healthy_fps > 0
    assert pushed.get("queue_full", 0) > 0 and set(pushed) <= {"sent", "queue_full"}, pushed  # it did flood
    assert uploaded.get("no_face", 0) > 0 and set(uploaded) <= {"no_face", "busy"}, uploaded
    assert end[1] == start[1], (start[1], end[1])
    assert end[2] <= start[2], (start[2], end[2])
    assert end[3] <= start[3], (start[3], end[3])

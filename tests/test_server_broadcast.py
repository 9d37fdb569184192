"""Broadcast mode: ONE avatar driven by audio pushed to /push (or a file) and watched by
several viewers, each getting the same frames through its own bounded queue."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.server import AvatarServer, ServerConfig  # noqa: E402
from testsupport.loopback_client import LoopbackViewer, audio_responsive_model  # noqa: E402
from testsupport.waiting import eventually  # noqa: E402


async def _push(url: str, seconds: float, rate: int = 16000) -> list[dict]:
    """Push int16 stereo noise in real time (20 ms messages) after the JSON header."""
    from websockets.asyncio.client import connect

    replies: list[dict] = []
    rng = np.random.default_rng(3)
    async with connect(url) as ws:
        await ws.send(b"\x00\x01")  # audio before the header: refused with a message
        replies.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"rate": rate, "channels": 2}))
        chunk = rate // 50
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in range(int(seconds * 50)):
            pcm = (0.3 * rng.standard_normal((chunk, 2)) * 32767).astype("<i2")
            await ws.send(pcm.tobytes())
            await asyncio.sleep(max(0.0, start + (k + 1) / 50 - loop.time()))
    return replies


def test_push_drives_one_avatar_watched_by_many(tiny_model):
    model = audio_responsive_model()
    h, w = model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1

    async def main():
        async with AvatarServer(model, ServerConfig(port=0, broadcast=True), still) as srv:
            base = f"ws://127.0.0.1:{srv.port}"
            pusher = asyncio.create_task(_push(base + "/push", 5.0), name="test-pusher")
            await eventually(lambda: srv.broadcast.pusher_active, "the pusher to be connected")
            from websockets.asyncio.client import connect

            async with connect(base + "/push") as second:  # one source at a time
                busy = json.loads(await second.recv())
            viewers = [LoopbackViewer(base + "/ws", mode="watch") for _ in range(3)]
            for v in viewers:
                await v.connect()
            await asyncio.gather(*(v.wait_frames(50, timeout=30) for v in viewers))
            hub_viewers = srv.broadcast.hub.viewers
            sessions = len(srv.worker.sessions)
            for v in viewers:
                await v.close()
            replies = await pusher
            await eventually(lambda: srv.broadcast.hub.viewers == 0 and not srv.clients, "the closed viewers to leave")
            return viewers, busy, replies, hub_viewers, sessions, srv.broadcast.hub.viewers

    viewers, busy, replies, hub_viewers, sessions, viewers_after = asyncio.run(main())
    assert busy["code"] == "busy" and replies[0]["code"] == "bad_message"
    assert hub_viewers == 3 and sessions == 1 and viewers_after == 0  # one model session for all
    for v in viewers:
        assert v.video.data[-1].shape == (h, w, 3)
        t = np.asarray(v.video.times[10:])
        assert abs(float(np.median(25 / (t[25:] - t[:-25]))) - 25.0) < 2.5  # three decoders share this process
        assert len(v.audio.times) > 1.6 * len(v.video.times)  # 20 ms audio frames alongside
    # the same frames reach every viewer: each picture of viewer 0 has a near-identical twin
    # among the others' recent frames (each went through its own VP8 encoder), while
    # neighbouring frames differ clearly (the pushed noise moves the face)
    ref = [img.astype(np.float32) for img in viewers[0].video.data[-12:-4]]
    for v in viewers[1:]:
        others = [img.astype(np.float32) for img in v.video.data]
        for img in ref:
            dist = sorted(float(np.abs(img - o).mean()) for o in others)
            assert dist[0] < 4.0 and dist[0] < 0.5 * dist[len(dist) // 2], dist[:5]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_broadcast_from_file(tmp_path, tiny_model):
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "One two three four five."], check=True, timeout=60)
    h, w = tiny_model.config.img_size

    async def main():
        config = ServerConfig(port=0, broadcast_audio=wav)
        async with AvatarServer(tiny_model, config, torch.zeros(1, 3, h, w)) as srv:
            async with LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", mode="watch") as v:
                await v.wait_frames(30, timeout=30)
                return v, srv.broadcast.player.rate

    v, rate = asyncio.run(main())
    assert rate == 22050 and v.video.data[-1].shape == (h, w, 3)
    speech = np.concatenate(v.audio.data)
    assert np.abs(speech).max() > 0.05  # the file's speech comes back with the avatar


def test_watch_without_broadcast_is_a_plain_error(tiny_model):
    h, w = tiny_model.config.img_size

    async def main():
        async with AvatarServer(tiny_model, ServerConfig(port=0), torch.zeros(1, 3, h, w)) as srv:
            v = LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", mode="watch")
            with pytest.raises(RuntimeError, match="no_broadcast"):
                await v.connect()
            await v.close()
            from websockets.asyncio.client import connect

            async with connect(f"ws://127.0.0.1:{srv.port}/push") as ws:
                return json.loads(await ws.recv())

    assert asyncio.run(main())["code"] == "no_broadcast"

"""``POST /say`` and ``POST /interrupt`` on a real broadcast server on loopback, watched by a
real aiortc viewer: espeak-ng speech reaches the viewer with moving lips, an interrupt turns
it to silence and an idle face; bad requests get one clear JSON reason each."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from urllib.parse import quote

import numpy as np
import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.server import AvatarServer, ServerConfig  # noqa: E402
from testsupport.loopback_client import LoopbackViewer, audio_responsive_model  # noqa: E402

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TEXT = ("Hello there. This is a rather long sentence, and it goes on and on, so that "
        "the interrupt lands in the middle of it while the avatar is still speaking.")


async def http(port: int, method: str, path: str, origin: str | None = None) -> tuple[int, dict]:
    """One raw HTTP/1.1 request on loopback; (status, JSON body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Origin: {origin}\r\n" if origin else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {"raw": body.decode(errors="replace")}


def _still(model) -> torch.Tensor:
    h, w = model.config.img_size
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1


@needs_espeak
def test_say_speaks_to_the_viewer_and_interrupt_silences_it() -> None:
    model = audio_responsive_model()

    async def main():
        async with AvatarServer(model, ServerConfig(port=0, broadcast=True), _still(model)) as srv:
            viewer = LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", mode="watch")
            await viewer.connect()
            try:
                await viewer.wait_frames(25, timeout=30)
                said = await http(srv.port, "POST", "/say?text=" + quote(TEXT))
                t_say = time.monotonic()
                deadline = t_say + 15
                while time.monotonic() < deadline:  # speech reaches the viewer
                    if sum(float(np.abs(a).max()) > 0.05 for a in viewer.audio.data[-50:]) >= 10:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # mid-sentence
                stopped = await http(srv.port, "POST", "/interrupt")
                t_int = time.monotonic()
                await asyncio.sleep(1.5)
                session = srv.broadcast.session
                return viewer, said, stopped, t_say, t_int, session.interrupts
            finally:
                await viewer.close()

    viewer, said, stopped, t_say, t_int, interrupts = asyncio.run(main())
    assert said == (200, {"ok": True, "id": said[1]["id"], "sentences": 2}), said
    assert stopped[0] == 200 and stopped[1]["dropped_s"] > 0.5 and interrupts == 1  # mid-sentence: much was left
    at = np.asarray(viewer.audio.times)
    peak = np.array([float(np.abs(a).max()) for a in viewer.audio.data])
    speaking = (at > t_say) & (at < t_int)
    assert peak[speaking].max() > 0.1
    assert peak[at > t_int + 0.5].max() < 0.01  # silence after the interrupt
    vt = np.asarray(viewer.video.times)
    imgs = np.stack([im.astype(np.int16) for im in viewer.video.data])
    motion = np.abs(np.diff(imgs, axis=0)).reshape(len(imgs) - 1, -1).mean(axis=1)
    first_sound = at[speaking & (peak > 0.05)].min()
    during = motion[(vt[1:] > first_sound + 0.1) & (vt[1:] < t_int)]
    after = motion[vt[1:] > t_int + 0.6]
    assert len(during) > 10 and len(after) > 10
    assert np.median(during) > 3 * max(np.median(after), 0.3), (np.median(during), np.median(after))  # lips moved, then idle


def test_say_and_interrupt_refuse_bad_requests_with_a_reason() -> None:
    model = audio_responsive_model()

    async def main():
        out = {}
        async with AvatarServer(model, ServerConfig(port=0, broadcast=True), _still(model)) as srv:
            p = srv.port
            out["get"] = await http(p, "GET", "/say?text=hi")
            out["none"] = await http(p, "POST", "/say")
            out["empty"] = await http(p, "POST", "/say?text=%20%20")
            out["voice"] = await http(p, "POST", "/say?text=hi&voice=-w%20/tmp/x")
            out["long"] = await http(p, "POST", "/say?text=" + "a" * 5200)
            out["cross"] = await http(p, "POST", "/say?text=hi", origin="http://evil.example")
            out["page"] = await http(p, "GET", "/")  # the page is still served
        async with AvatarServer(model, ServerConfig(port=0, token="sesame"), _still(model)) as srv:
            out["no_token"] = await http(srv.port, "POST", "/interrupt")
            out["no_broadcast"] = await http(srv.port, "POST", "/interrupt?token=sesame")
        return out

    out = asyncio.run(main())
    assert out["get"][0] == 405 and "POST" in out["get"][1]["message"]
    assert out["none"][0] == 400 and "text=" in out["none"][1]["message"]
    assert out["empty"][0] == 400 and "empty" in out["empty"][1]["message"]
    assert out["voice"][0] == 400 and "voice" in out["voice"][1]["message"]
    assert out["long"][0] == 400 and "at most" in out["long"][1]["message"]
    assert out["cross"][0] == 403
    assert out["page"][0] == 200
    assert out["no_token"][0] == 403 and "token" in out["no_token"][1]["message"]
    assert out["no_broadcast"][0] == 404 and "--broadcast" in out["no_broadcast"][1]["message"]

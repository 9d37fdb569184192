"""The page in a real headless Chromium (Debian's /usr/bin/chromium, driven over the DevTools
protocol): it loads, connects, sends the fake microphone (espeak-ng speech) and shows the
avatar's video advancing. A screenshot is saved under the test's tmp dir."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.server import AvatarServer, ServerConfig  # noqa: E402
from testsupport.chromium import CHROMIUM, HeadlessChromium  # noqa: E402
from testsupport.loopback_client import audio_responsive_model  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (see .ci/install)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


# The avatar video's playback position and the frames it has shown so far.
PLAYBACK = ("[document.getElementById('avatar').currentTime,"
            " document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames]")


def _speech_wav(tmp: Path) -> Path:
    raw, wav = tmp / "speech22k.wav", tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), "Hello, this is a talking face test. " * 4], check=True, timeout=60)
    if shutil.which("sox"):  # Chromium's fake capture plays 48 kHz best
        subprocess.run(["sox", str(raw), "-r", "48000", str(wav)], check=True, timeout=60)
        return wav
    return raw


def test_page_in_headless_chromium(tmp_path):
    model = audio_responsive_model()
    h, w = model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    wav = _speech_wav(tmp_path)
    profile = tmp_path / "profile"
    shot = tmp_path / "browser.png"

    async def main():
        async with AvatarServer(model, ServerConfig(port=0), still) as srv:
            async with HeadlessChromium(wav, profile) as browser, browser.page(f"http://127.0.0.1:{srv.port}/") as cdp:
                await cdp.wait_for("window.sda && window.sda.ready !== null", 30, "the page to connect")
                await cdp.js("document.getElementById('start').click()")
                await cdp.wait_for("document.getElementById('avatar').readyState >= 2", 40, "the avatar video")
                q0 = await cdp.js(PLAYBACK)
                await asyncio.sleep(3.0)
                q1 = await cdp.js(PLAYBACK)
                await cdp.wait_for("window.sda.figures && Number.isFinite(window.sda.figures.latencyMs)", 10, "the latency figure")
                info = await cdp.js("({w: document.getElementById('avatar').videoWidth, h: document.getElementById('avatar').videoHeight,"
                                    " tracks: document.getElementById('avatar').srcObject.getTracks().map(t => t.kind).sort(),"
                                    " figures: window.sda.figures, message: document.getElementById('message').textContent})")
                server_clients = len(srv.clients)
                png = await cdp.call("Page.captureScreenshot", format="png")
                shot.write_bytes(base64.b64decode(png["data"]))
            for _ in range(100):  # the closed browser frees its session
                if not srv.clients and not srv.worker.sessions:
                    break
                await asyncio.sleep(0.05)
            return q0, q1, info, server_clients, len(srv.clients), len(srv.worker.sessions)

    q0, q1, info, clients_during, clients_after, sessions_after = asyncio.run(main())
    print(f"screenshot: {shot}")
    print(f"video {info['w']}x{info['h']}, tracks {info['tracks']}, time {q0[0]:.2f}->{q1[0]:.2f} s, "
          f"frames {q0[1]}->{q1[1]}, figures {info['figures']}, message {info['message']!r}")
    assert shot.stat().st_size > 1000
    assert (info["w"], info["h"]) == (w, h)
    assert info["tracks"] == ["audio", "video"]  # one MediaStream with both
    fig = info["figures"]  # end-to-end latency from getStats includes the model's look-ahead
    assert fig["lookaheadMs"] == pytest.approx(1000 * model.config.lookahead_samples / model.config.audio_rate, abs=0.1)
    assert fig["latencyMs"] == pytest.approx(fig["lookaheadMs"] + fig["serverMs"] + fig["rttMs"] + fig["videoPlayoutMs"])
    assert fig["latencyMs"] > fig["lookaheadMs"] + fig["serverMs"]
    assert q1[0] - q0[0] > 2.0, (q0, q1)  # playing in real time
    assert q1[1] - q0[1] > 15, (q0, q1)  # advancing frames (headless rendering may skip some)
    assert clients_during == 1 and clients_after == 0 and sessions_after == 0

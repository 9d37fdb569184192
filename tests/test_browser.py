"""The page in a real headless Chromium (Debian's /usr/bin/chromium, driven over the DevTools
protocol): it loads, connects, sends the fake microphone (espeak-ng speech) and shows the
avatar's video advancing. A screenshot is saved under the test's tmp dir."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.server import AvatarServer, ServerConfig  # noqa: E402
from realtime_sda.server.loopback_client import audio_responsive_model  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (see .ci/install)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


def _speech_wav(tmp: Path) -> Path:
    raw, wav = tmp / "speech22k.wav", tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), "Hello, this is a talking face test. " * 4], check=True, timeout=60)
    if shutil.which("sox"):  # Chromium's fake capture plays 48 kHz best
        subprocess.run(["sox", str(raw), "-r", "48000", str(wav)], check=True, timeout=60)
        return wav
    return raw


class CDP:
    """A minimal DevTools-protocol session on one page target."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params):
        msg_id = next(self._ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str):
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page error: {res['exceptionDetails']}")
        return res["result"].get("value")


def _launch(profile: Path, wav: Path) -> subprocess.Popen:
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--window-size=1100,800",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the group this test started (chromium's wrapper + children)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


async def _devtools_port(profile: Path, timeout: float = 30.0) -> int:
    path = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text().split()[0])
        await asyncio.sleep(0.1)
    raise TimeoutError("Chromium did not open its DevTools port")


async def _wait_for(cdp: CDP, expression: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await cdp.js(expression)
        if value:
            return value
        await asyncio.sleep(0.2)
    message = await cdp.js("document.getElementById('message').textContent")
    raise AssertionError(f"timed out waiting for {what}; the page says {message!r}")


def test_page_in_headless_chromium(tmp_path):
    from websockets.asyncio.client import connect

    model = audio_responsive_model()
    h, w = model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    wav = _speech_wav(tmp_path)
    profile = tmp_path / "profile"
    shot = tmp_path / "browser.png"

    async def main():
        async with AvatarServer(model, ServerConfig(port=0), still) as srv:
            proc = _launch(profile, wav)
            try:
                port = await _devtools_port(profile)
                targets = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10)))
                page = next(t for t in targets if t["type"] == "page")
                async with connect(page["webSocketDebuggerUrl"], max_size=2**26) as ws:
                    cdp = CDP(ws)
                    await cdp.call("Page.enable")
                    await cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.port}/")
                    await _wait_for(cdp, "window.sda && window.sda.ready !== null", 30, "the page to connect")
                    await cdp.js("document.getElementById('start').click()")
                    await _wait_for(cdp, "document.getElementById('avatar').readyState >= 2", 40, "the avatar video")
                    q0 = await cdp.js("[document.getElementById('avatar').currentTime, document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames]")
                    await asyncio.sleep(3.0)
                    q1 = await cdp.js("[document.getElementById('avatar').currentTime, document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames]")
                    info = await cdp.js("({w: document.getElementById('avatar').videoWidth, h: document.getElementById('avatar').videoHeight,"
                                        " tracks: document.getElementById('avatar').srcObject.getTracks().map(t => t.kind).sort(),"
                                        " figures: window.sda.figures, message: document.getElementById('message').textContent})")
                    server_clients = len(srv.clients)
                    png = await cdp.call("Page.captureScreenshot", format="png")
                    shot.write_bytes(base64.b64decode(png["data"]))
            finally:
                _stop(proc)
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
    assert q1[0] - q0[0] > 2.0, (q0, q1)  # playing in real time
    assert q1[1] - q0[1] > 15, (q0, q1)  # advancing frames (headless rendering may skip some)
    assert clients_during == 1 and clients_after == 0 and sessions_after == 0

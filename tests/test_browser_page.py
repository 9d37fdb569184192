"""The page's own behaviour in a real headless Chromium (issue 11): without the token it says
the token is missing and how to get it; a refused photo's thumbnail gives way to the
accepted one; after Stop nothing of the closed session is shown; the server logs one line
per session opened and closed, with its figures."""

from __future__ import annotations

import asyncio
import logging
import wave

import numpy as np
import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.server import AvatarServer, ServerConfig  # noqa: E402
from testsupport.chromium import CHROMIUM, HeadlessChromium  # noqa: E402
from testsupport.hostile import small_faceless_png  # noqa: E402
from testsupport.media import face_photo  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (see .ci/install)"),
]

TOKEN = "page-token"
_JS_STATE = """({message: document.getElementById('message').textContent,
  start: document.getElementById('start').disabled, stop: document.getElementById('stop').disabled,
  state: document.getElementById('state').textContent, fps: document.getElementById('fps').textContent,
  latency: document.getElementById('latency').textContent, frames: document.getElementById('frames').textContent,
  preview: document.getElementById('preview').getAttribute('src'), hidden: document.getElementById('preview').hidden})"""


def _says(text: str) -> str:
    """JS: the page's message includes ``text`` (false while the page is still loading)."""
    return f"((document.getElementById('message') || {{}}).textContent || '').includes({text!r})"


def _tone(path):
    t = np.arange(48000 * 2) / 48000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes())
    return path


async def _choose_file(cdp, path) -> None:
    """Put ``path`` into the photo input as a user would (its change event uploads it)."""
    doc = await cdp.call("DOM.getDocument")
    node = await cdp.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#photo")
    await cdp.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(path)])


class _Sessions(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "session" in record.getMessage():
            self.lines.append(record.getMessage())


def test_token_message_photo_thumbnail_and_stop_reset(tmp_path, tiny_model):
    faceless = tmp_path / "faceless.png"
    faceless.write_bytes(small_faceless_png(0))
    h, w = tiny_model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sessions = _Sessions()
    logger = logging.getLogger("realtime_sda.server.client")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(sessions)

    async def main():
        config = ServerConfig(port=0, token=TOKEN, photo_size=160)
        async with AvatarServer(tiny_model, config, still) as srv:
            base = f"http://127.0.0.1:{srv.port}/"
            async with HeadlessChromium(_tone(tmp_path / "tone.wav"), tmp_path / "profile") as browser, \
                    browser.page(base) as cdp:
                await cdp.wait_for(_says("token"), 15,
                                   "the missing-token message")
                no_token = await cdp.js(_JS_STATE)
                await cdp.call("Page.navigate", url=f"{base}?token={TOKEN}")
                await cdp.wait_for("window.sda && window.sda.ready !== null", 30, "the page to connect")
                await _choose_file(cdp, face_photo())
                await cdp.wait_for(_says("Photo accepted"), 60,
                                   "the photo to be accepted")
                accepted = await cdp.js(_JS_STATE)
                await _choose_file(cdp, faceless)
                await cdp.wait_for(_says("No face"), 60,
                                   "the faceless photo to be refused")
                refused = await cdp.js(_JS_STATE)
                await cdp.js("document.getElementById('start').click()")
                await cdp.wait_for("document.getElementById('state').textContent === 'connected'", 40, "connected")
                await cdp.wait_for("document.getElementById('fps').textContent.includes('fps')", 20, "the figures")
                live = await cdp.js(_JS_STATE)
                await cdp.js("document.getElementById('stop').click()")
                await asyncio.sleep(2.5)  # two rounds of the page's figure updates
                stopped = await cdp.js(_JS_STATE)
            for _ in range(100):
                if not srv.clients:
                    break
                await asyncio.sleep(0.05)
            return no_token, accepted, refused, live, stopped

    try:
        no_token, accepted, refused, live, stopped = asyncio.run(main())
    finally:
        logger.removeHandler(sessions)
        logger.setLevel(level)
    print(no_token, accepted, refused, live, stopped, sessions.lines, sep="\n")
    assert "needs an access token" in no_token["message"] and "?token=" in no_token["message"], no_token
    assert no_token["start"] is True  # nothing to start without a token, and the page says why
    assert accepted["preview"] and not accepted["hidden"]
    assert refused["preview"] == accepted["preview"] and not refused["hidden"], (accepted, refused)
    assert live["state"] == "connected" and "fps" in live["fps"]
    assert stopped["state"] == "signaling connected", stopped
    assert stopped["fps"] == stopped["latency"] == stopped["frames"] == "–", stopped
    assert stopped["start"] is False and stopped["stop"] is True
    opened = [ln for ln in sessions.lines if "session opened" in ln]
    closed = [ln for ln in sessions.lines if "session closed" in ln]
    assert len(opened) == 1 and len(closed) == 1, sessions.lines
    assert "frames sent" in closed[0] and "dropped" in closed[0] and "latency" in closed[0], closed

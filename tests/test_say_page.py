"""The page's Say box and Interrupt button in a real headless Chromium watching the broadcast:
typed text is spoken (the page's received audio energy rises) and the avatar's lips move on
the page; Interrupt brings back silence and the idle face."""

from __future__ import annotations

import asyncio
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

# Counts, in the page, how much the avatar's picture changes from one video frame to the
# next (mean absolute difference of a 48x64 copy) and the audio energy received so far.
METER = """
(() => {
  const v = document.getElementById('avatar');
  const c = document.createElement('canvas'); c.width = 48; c.height = 64;
  const g = c.getContext('2d', { willReadFrequently: true });
  window.meter = { motion: [], energy: [] };
  let prev = null;
  const onFrame = () => {
    g.drawImage(v, 0, 0, 48, 64);
    const d = g.getImageData(0, 0, 48, 64).data;
    if (prev) {
      let s = 0;
      for (let i = 0; i < d.length; i += 4) s += Math.abs(d[i] - prev[i]) + Math.abs(d[i + 1] - prev[i + 1]);
      window.meter.motion.push([performance.now(), s / (d.length / 2)]);
    }
    prev = d.slice();
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
  setInterval(async () => {
    const stats = await window.sda.pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') window.meter.energy.push([performance.now(), r.totalAudioEnergy || 0]);
    });
  }, 100);
  return true;
})()
"""

WINDOW = """((t0, t1) => {
  const m = window.meter.motion.filter(([t]) => t >= t0 && t < t1).map(([, d]) => d).sort((a, b) => a - b);
  const e = window.meter.energy.filter(([t]) => t >= t0 && t < t1);
  return { motion: m.length ? m[Math.floor(m.length / 2)] : null, frames: m.length,
           energy: e.length > 1 ? e[e.length - 1][1] - e[0][1] : null };
})"""


def test_the_page_says_typed_text_and_interrupts_it(tmp_path: Path) -> None:
    model = audio_responsive_model()
    h, w = model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mic = tmp_path / "quiet.wav"  # the page's fake microphone (unused in watch mode)
    subprocess.run(["espeak-ng", "-w", str(mic), "."], check=True, timeout=60)
    text = "Hello from the page. This sentence is long enough to be interrupted while the avatar speaks it aloud."

    async def main():
        async with AvatarServer(model, ServerConfig(port=0, broadcast=True), still) as srv:
            async with HeadlessChromium(mic, tmp_path / "profile") as browser, \
                    browser.page(f"http://127.0.0.1:{srv.port}/") as cdp:
                await cdp.wait_for("window.sda && window.sda.ready && !document.getElementById('mode-watch').disabled",
                                   30, "the page to see the broadcast")
                await cdp.js("document.getElementById('mode-watch').click(); document.getElementById('start').click()")
                await cdp.wait_for("document.getElementById('avatar').readyState >= 2", 40, "the avatar video")
                await cdp.js(METER)
                await asyncio.sleep(2.0)
                t_say = await cdp.js(f"document.getElementById('say-text').value = {text!r}; "
                                     "document.getElementById('say-send').click(); performance.now()")
                await cdp.wait_for("document.getElementById('say-status').textContent.startsWith('Saying')", 10, "the say reply")
                await asyncio.sleep(2.5)
                t_int = await cdp.js("document.getElementById('say-interrupt').click(); performance.now()")
                await cdp.wait_for("document.getElementById('say-status').textContent.startsWith('Interrupted')", 10,
                                   "the interrupt reply")
                await asyncio.sleep(2.0)
                t_end = await cdp.js("performance.now()")
                idle = await cdp.js(f"{WINDOW}({t_say - 1500}, {t_say})")
                speaking = await cdp.js(f"{WINDOW}({t_say + 700}, {t_int})")
                after = await cdp.js(f"{WINDOW}({t_int + 600}, {t_end})")
                status = await cdp.js("document.getElementById('say-status').textContent")
            return idle, speaking, after, status, srv.broadcast.session.interrupts

    idle, speaking, after, status, interrupts = asyncio.run(main())
    print(f"idle {idle}, speaking {speaking}, after the interrupt {after}, status {status!r}")
    assert interrupts == 1 and "dropped" in status
    assert speaking["frames"] > 20 and idle["frames"] > 10 and after["frames"] > 10  # the video kept playing
    assert speaking["energy"] > 20 * max(idle["energy"], 1e-6)  # speech was heard on the page
    assert after["energy"] < speaking["energy"] / 20  # and then silence
    assert speaking["motion"] > 3 * max(idle["motion"], after["motion"], 0.2)  # lips moved with it, then idle

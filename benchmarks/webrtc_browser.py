"""WebRTC latency as a real browser sees it: headless Chromium (Debian's) on the avatar page.

Chromium's fake microphone plays a wav of voiced bursts (a 140 Hz harmonic tone, 0.4 s each,
looped) through the page's own getUserMedia (echo cancellation and noise suppression on), to
an in-process AvatarServer with the responsive random-weight model. A script added to the
page over the DevTools protocol timestamps (``performance.now()``), in the page itself:

- each burst onset in the microphone track as the page receives it (MediaStreamTrackProcessor,
  after Chromium's audio processing; the sample's place within its 10 ms chunk counted);
- the onset in the avatar's audio track as Chromium renders it (after its jitter buffer and
  lip sync): the **voice delay**, what a person hears;
- every avatar frame as it is presented (requestVideoFrameCallback ``expectedDisplayTime``)
  with its change from the previous one: the **first reaction**, the first frame that moves.

Latency in the aim's sense (a frame's own audio period ends, the frame is shown) is the voice
delay less one frame period, since each frame plays with its own audio (A/V offset, from
getStats, printed beside it). Prints the figures and writes JSON under benchmarks/results/.

    python benchmarks/webrtc_browser.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testsupport/ (not installed)

from realtime_sda.server import AvatarServer, ServerConfig
from testsupport.chromium import HeadlessChromium
from testsupport.loopback_client import audio_responsive_model
from testsupport.models import tiny_config

RATE = 48000
EVERY = 1.93  # s between bursts (not a multiple of the frame period)
BURST = 0.4
CHANGE = 0.3  # mean abs change (8-bit levels) that counts as a reaction: silent frames differ by 0.0
SETTLE = 10  # s: Chromium's lip sync converges in the first seconds; A/V samples after this

MEASURE_JS = r"""
(() => {
  const B = { mic: [], remote: [], frames: [], av: [] };
  const THR = 0.05, QUIET_MS = 300;
  async function onsets(track, list) {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    let lastLoud = -1e9;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const t = performance.now(), n = value.numberOfFrames, sr = value.sampleRate;
      const x = new Float32Array(n);
      value.copyTo(x, { planeIndex: 0, format: "f32-planar" });
      value.close();
      for (let i = 0; i < n; i++) {
        if (Math.abs(x[i]) > THR) {
          const ts = t - ((n - i) / sr) * 1000;
          if (ts - lastLoud > QUIET_MS) list.push(ts);
          lastLoud = ts;
        }
      }
    }
  }
  const video = document.getElementById("avatar");
  onsets(window.sda.mic.getAudioTracks()[0], B.mic);
  onsets(video.srcObject.getAudioTracks()[0], B.remote);
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = new OffscreenCanvas(w, h), g = canvas.getContext("2d", { willReadFrequently: true });
  let prev = null;
  const onFrame = (now, meta) => {
    g.drawImage(video, 0, 0, w, h);
    const d = g.getImageData(0, 0, w, h).data;
    let diff = 0;
    if (prev) {
      for (let i = 0; i < d.length; i += 4)
        diff += Math.abs(d[i] - prev[i]) + Math.abs(d[i + 1] - prev[i + 1]) + Math.abs(d[i + 2] - prev[i + 2]);
      diff /= w * h * 3;
    }
    prev = d;
    B.frames.push([meta.expectedDisplayTime, diff]);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  setInterval(() => { const f = window.sda.figures; if (f && isFinite(f.avOffsetMs)) B.av.push(f.avOffsetMs); }, 1000);
  window.bench = B;
  return true;
})()
"""


def burst_wav(path: Path, seconds: float) -> None:
    """Voiced bursts (harmonics of 140 Hz to 4 kHz, 5 ms fade in) every EVERY s, 16-bit 48 kHz."""
    rng = np.random.default_rng(0)
    sig = np.zeros(int(RATE * seconds), np.float32)
    t = np.arange(int(RATE * BURST)) / RATE
    tone = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 2 * np.pi)) / k**0.5 for k in range(1, 29))
    tone = (0.4 * tone / np.abs(tone).max() * np.minimum(1.0, t / 0.005)).astype(np.float32)
    start = 1.0
    while start + BURST < seconds:
        a = int(RATE * start)
        sig[a : a + tone.size] = tone
        start += EVERY
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes((sig * 32767).astype("<i2").tobytes())


def analyse(b: dict, stride_ms: float) -> dict:
    mic, remote = np.asarray(b["mic"]), np.asarray(b["remote"])
    frames = np.asarray(b["frames"]) if b["frames"] else np.zeros((0, 2))
    voice, first = [], []
    for m in mic:
        r = remote[(remote > m) & (remote < m + 600)]
        if r.size:
            voice.append(r[0] - m)
        f = frames[(frames[:, 0] > m) & (frames[:, 0] < m + 600) & (frames[:, 1] > CHANGE)]
        if f.size:
            first.append(f[0, 0] - m)

    def stats(x: list[float]) -> dict:
        return {"median": float(np.median(x)), "p90": float(np.percentile(x, 90)), "n": len(x)} if x else {}

    shown = frames[:, 0]
    fps = float((shown.size - 1) / ((shown[-1] - shown[0]) / 1000)) if shown.size > 1 else float("nan")
    return {
        "voice_delay_ms": stats(voice),
        "latency_ms": {k: v - stride_ms if k != "n" else v for k, v in stats(voice).items()},
        "first_reaction_ms": stats(first),
        "av_offset_ms_getstats": stats(b["av"][SETTLE:]),
        "presented_fps": fps,
        "bursts": int(mic.size),
    }


async def run(args: argparse.Namespace) -> dict:
    config = tiny_config()
    model = audio_responsive_model(config, seed=1)
    h, w = config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "bursts.wav"
        burst_wav(wav, args.seconds + 10)
        async with AvatarServer(model, ServerConfig(port=0), still) as srv:
            async with HeadlessChromium(wav) as browser, browser.page(f"http://127.0.0.1:{srv.port}/") as cdp:
                await cdp.wait_for("window.sda && window.sda.ready !== null", 30, "the page to connect")
                await cdp.js("document.getElementById('start').click()")
                await cdp.wait_for("document.getElementById('avatar').readyState >= 2 && !!window.sda.mic", 40, "the avatar video")
                await cdp.js(MEASURE_JS)
                await asyncio.sleep(args.seconds)
                data = await cdp.js("window.bench")
                figures = await cdp.js("window.sda.figures")
    if args.raw:
        Path(args.raw).write_text(json.dumps(data))  # noqa: ASYNC240 (after the measurement)
    lookahead = 1000 * config.lookahead_samples / config.audio_rate
    result = analyse(data, 1000 * config.stride / config.audio_rate)
    return {
        "benchmark": "webrtc_browser",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "device": "cpu"},
        "model": {"config": "tiny", "img_size": [h, w], "lookahead_ms": lookahead, "weights": "random (responsive)"},
        "seconds": args.seconds,
        **result,
        "latency_beyond_lookahead_ms": result["latency_ms"].get("median", float("nan")) - lookahead,
        "page_figures_last": figures,
        "notes": "headless Chromium (Debian) and the server on one 2-core machine, loopback; times are "
                 "performance.now() in the page: microphone onsets as the page receives them (after "
                 "Chromium's audio processing), avatar audio as rendered, frames as presented",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--raw", default=None, help="also write the page's raw timestamps (JSON) here")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/webrtc_browser.json)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    out = Path(args.out or Path(__file__).parent / "results" / "webrtc_browser.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    v, lat, fr, av = result["voice_delay_ms"], result["latency_ms"], result["first_reaction_ms"], result["av_offset_ms_getstats"]
    print(f"headless Chromium, {result['seconds']:.0f} s, {result['bursts']} bursts, {result['presented_fps']:.2f} fps presented")
    print(f"voice delay (mic onset in the page -> the onset rendered in the avatar's audio): median "
          f"{v.get('median', float('nan')):.0f} ms, p90 {v.get('p90', float('nan')):.0f} ms ({v.get('n', 0)} bursts)")
    print(f"latency (the aim's: voice delay less one frame period): median {lat.get('median', float('nan')):.0f} ms "
          f"= look-ahead {result['model']['lookahead_ms']:.0f} ms + {result['latency_beyond_lookahead_ms']:.0f} ms")
    print(f"first reaction (mic onset -> first avatar frame presented that moves): median "
          f"{fr.get('median', float('nan')):.0f} ms, p90 {fr.get('p90', float('nan')):.0f} ms")
    print(f"A/V offset (Chromium's getStats, estimatedPlayoutTimestamp): median {av.get('median', float('nan')):+.0f} ms")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

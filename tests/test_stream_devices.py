"""Real devices: the microphone path through a real PortAudio stream on the ALSA null device,
and the preview window under Xvfb (screenshot compared with the expected frames). Both run
in subprocesses with HOME set to a temporary directory (its .asoundrc makes the ALSA default
device a null device); the user's own files are never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from test_stream_pipeline import write_wav

from realtime_sda.checkpoints.loading import load_model
from realtime_sda.core.noise import NoiseSource
from realtime_sda.media.audio import audio_windows, load_audio
from realtime_sda.media.face import prepare_still
from realtime_sda.media.image import frames_to_uint8

# Playback to the null device; capture from ALSA's file plugin reading /dev/zero (the bare
# null device leaves capture buffers uninitialised, which gave garbage, even NaN, samples).
ASOUNDRC = """pcm.!default {
  type asym
  playback.pcm "null"
  capture.pcm {
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "/dev/zero"
    format "raw"
  }
}
ctl.!default {
  type hw
  card 0
}
"""


@pytest.fixture()
def null_audio_home(tmp_path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ASOUNDRC)
    env = dict(os.environ, HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("DISPLAY", None)
    return env


MIC_SCRIPT = r"""
import asyncio, json, sys, threading, torch
from realtime_sda.checkpoints.loading import load_model
from realtime_sda.streaming import InferenceWorker, StreamPipeline, MicrophoneSource
from realtime_sda.streaming.sinks import MemorySink
from realtime_sda.errors import DeviceError

before = set(threading.enumerate())

async def main():
    model = load_model(sys.argv[1])
    h, w = model.config.img_size
    mic = MicrophoneSource(rate=44100)
    try:
        MicrophoneSource(device=99)
        bad = None
    except DeviceError as exc:
        bad = str(exc)
    worker = InferenceWorker(model)
    await worker.start()
    session = await worker.open_session(torch.zeros(1, 3, h, w), seed=0)
    sink = MemorySink()
    snap = await StreamPipeline(session, mic, [sink]).run(duration=1.5)
    await worker.stop()
    return {"frames": snap.frames, "blocks": mic.blocks_read, "device": mic.device_name,
            "rate": mic.rate, "bad": bad, "audio_rate": sink.frames[0].audio_rate if sink.frames else None}

out = asyncio.run(main())  # shuts the loop's default executor down too (its threads are asyncio's own)
out["alive"] = [t.name for t in set(threading.enumerate()) - before]
print(json.dumps(out))
"""


def test_microphone_through_portaudio_null_device(tiny_checkpoint, null_audio_home) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", MIC_SCRIPT, str(tiny_checkpoint)],
        env=null_audio_home, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocks"] > 0 and out["rate"] == 44100 and out["device"] == "default"
    assert out["frames"] >= 20  # ~25 fps for 1.5 s after the first audio
    assert out["audio_rate"] == 16000  # resampled from 44.1 kHz to the model rate
    assert "no usable microphone 99" in out["bad"] and "Input devices: 0: default" in out["bad"]
    assert out["alive"] == []  # PortAudio stream, worker and sink threads all gone


@pytest.mark.slow
def test_preview_window_shows_the_face_under_xvfb(tiny_checkpoint, null_audio_home, xvfb, tmp_path) -> None:
    from PIL import Image, ImageGrab

    model = load_model(tiny_checkpoint)
    cfg = model.config
    avatar = tmp_path / "avatar.png"
    Image.fromarray((np.random.default_rng(0).random((*cfg.img_size, 3)) * 255).astype(np.uint8)).save(avatar)
    wav = write_wav(tmp_path / "speech.wav", cfg.audio_rate, 6.0)  # many chances for a clean shot
    still = prepare_still(avatar, cfg, aligned=True)
    windows = audio_windows(load_audio(wav, None, cfg.audio_rate), cfg)
    noise = NoiseSource(cfg.aux_latent, 5).next(windows.shape[0])
    expected = frames_to_uint8(model.generate(still, windows[None], noise[None], chunk_frames=1)[0].permute(0, 2, 3, 1))
    scale = 4
    templates = [np.repeat(np.repeat(f, scale, 0), scale, 1).astype(np.int16) for f in expected]

    env = dict(null_audio_home, DISPLAY=xvfb)
    cmd = [sys.executable, "-m", "realtime_sda", "preview", "--audio", str(wav), "--avatar", str(avatar),
           "--aligned", "--model", str(tiny_checkpoint), "--seed", "5", "--scale", str(scale), "--grace-ms", "2000",
           "--max-lag-frames", "0", "--record", str(tmp_path / "rec.mp4")]  # a busy machine: never skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    th, tw = templates[0].shape[:2]
    best, shots, status, seen = (np.inf, -1), 0, None, "nothing"
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline and best[0] > 0:
            time.sleep(0.1)
            shot = np.asarray(ImageGrab.grab(xdisplay=xvfb).convert("RGB")).astype(np.int16)
            shots += 1
            # the window: everything that is not the black root window (Xvfb -br)
            ys, xs = np.nonzero((shot != shot[-1, -1]).any(axis=2))
            if ys.size == 0:
                seen = "an empty screen"
                continue
            y0, x0 = ys.min(), xs.min()
            crop = shot[y0 : y0 + th, x0 : x0 + tw]
            seen = f"a window at ({x0}, {y0}) to ({xs.max()}, {ys.max()})"
            if crop.shape != templates[0].shape:
                continue
            # the face region must equal one of the expected frames exactly (nearest scaling)
            errs = [float(np.abs(crop - t).mean()) for t in templates]
            k = int(np.argmin(errs))
            if errs[k] < best[0]:
                best, status = (errs[k], k), shot[y0 + th : y0 + th + 20, x0 : x0 + tw]
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "frames" in out and "latency p50" in out
    assert best[0] == 0.0, (f"no screenshot of {shots} showed an expected frame exactly "
                            f"(best {best}; last saw {seen}; preview said {err[-800:]!r})")
    assert status is not None and (status > 200).any()  # the overlay text under the face
    import av  # --record wrote the same stream to an mp4 beside the window

    with av.open(str(tmp_path / "rec.mp4")) as c:
        n = sum(1 for _ in c.decode(video=0))
    made = int(out.strip().splitlines()[-1].split(" frames")[0])  # "N frames, ... fps, ..."
    assert n == made == len(expected)

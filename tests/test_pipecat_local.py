"""The pipecat processor with pipecat's local output (``TkLocalTransport``: the picture in a Tk
window, the sound through PyAudio), for real: speech goes through ``SDAAvatarProcessor`` into
``TkLocalTransport(...).output()`` in a subprocess on a private Xvfb, with HOME set to a
temporary directory whose .asoundrc makes the ALSA default playback device a file (through
the null device). Checked from what came out: screenshots of the window equal frames the
processor emitted, the window's picture changed at the pipeline's frame rate, the bytes
PortAudio played are exactly the processor's speech, and the pipeline ends on its EndFrame
leaving no threads behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pipecat")
pytest.importorskip("tkinter", reason="tkinter is not installed (apt-get install python3-tk)")
pytest.importorskip("pyaudio", reason="pyaudio is not installed (apt-get install portaudio19-dev;"
                    " pip install 'realtime-sda[pipecat-local]')")

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
RATE = 24000  # the pipeline's (and PyAudio's) output rate
SPEECH_S = 2.5

# Playback into a raw file (what PortAudio wrote, byte for byte) through the null device;
# capture from the null device (unused).
ASOUNDRC = """pcm.!default {{
  type asym
  playback.pcm {{
    type file
    slave.pcm "null"
    file "{played}"
    format "raw"
  }}
  capture.pcm "null"
}}
ctl.!default {{
  type hw
  card 0
}}
"""

SCRIPT = r"""
import asyncio, contextlib, json, sys, threading, time
import tkinter as tk

import numpy as np
import torch
from loguru import logger
from PIL import ImageGrab
from pipecat.frames.frames import (EndFrame, OutputAudioRawFrame, OutputImageRawFrame, TTSAudioRawFrame,
                                   TTSStartedFrame, TTSStoppedFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.local.tk import TkLocalTransport, TkTransportParams
from pipecat.workers.runner import WorkerRunner

from realtime_sda.integrations.pipecat import SDAAvatarProcessor
from realtime_sda.media.audio import to_int16
from realtime_sda.streaming import InferenceWorker
from testsupport.loopback_client import audio_responsive_model
from testsupport.media import speech_like
from testsupport.streaming import random_still

display, sent_path, rate, speech_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
logger.remove()
logger.add(sys.stderr, level="WARNING")
torch.set_num_threads(1)
before = set(threading.enumerate())


class Tap(FrameProcessor):
    # What the avatar processor sent to the output transport, with the time it passed here.
    def __init__(self):
        super().__init__()
        self.images, self.audio, self.stopped_at = [], [], None

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputImageRawFrame):
            self.images.append((time.monotonic(), frame.image))
        elif isinstance(frame, OutputAudioRawFrame):
            self.audio.append((time.monotonic(), frame.audio))
        elif isinstance(frame, TTSStoppedFrame):
            self.stopped_at = time.monotonic()
        await self.push_frame(frame, direction)


async def until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def main():
    root = tk.Tk()
    root.title("avatar")
    model = audio_responsive_model()
    out = {"shots": [], "photos": [], "ended": None}
    async with InferenceWorker(model) as worker:
        session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
        avatar = SDAAvatarProcessor(session)
        (w, h), fps = avatar.size, round(avatar.fps)
        out.update(size=[w, h], fps=fps)
        transport = TkLocalTransport(root, TkTransportParams(
            audio_out_enabled=True, audio_out_sample_rate=rate, video_out_enabled=True,
            video_out_width=w, video_out_height=h, video_out_framerate=fps, audio_out_end_silence_secs=0))
        output = transport.output()
        (label,) = root.winfo_children()  # the transport's own Tk label: where it shows the frames
        tap = Tap()
        task = PipelineWorker(Pipeline([avatar, tap, output]), params=PipelineParams(audio_out_sample_rate=rate),
                              idle_timeout_secs=None)
        workers = WorkerRunner(handle_sigint=False)
        await workers.add_workers(task)

        async def pump():
            # Tk's events from asyncio (as pipecat's Tk examples do); every 100 ms a screenshot
            # of where the label shows its image, looked up among the frames the tap saw.
            seen, known, next_shot = 0, {}, 0.0
            while True:
                root.update()
                now = time.monotonic()
                name = str(label.cget("image"))
                size = (0, 0)  # the transport's first (grey) photo is gone already: garbage-collected
                if name in root.tk.splitlist(root.tk.call("image", "names")):
                    size = (int(root.tk.call("image", "width", name)), int(root.tk.call("image", "height", name)))
                if not out["photos"] or out["photos"][-1][1] != name:
                    out["photos"].append((now, name, *size))
                while seen < len(tap.images):
                    known[tap.images[seen][1]] = seen
                    seen += 1
                if now >= next_shot and size == (w, h):
                    next_shot = now + 0.1
                    x = label.winfo_rootx() + (label.winfo_width() - w) // 2
                    y = label.winfo_rooty() + (label.winfo_height() - h) // 2
                    shot = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=display).convert("RGB")
                    k = known.get(shot.tobytes())
                    err = None
                    if k is None and tap.images:
                        err = float(np.abs(np.asarray(shot, np.int16)
                                           - np.frombuffer(tap.images[-1][1], np.uint8).reshape(h, w, 3)).mean())
                    out["shots"].append((now, k, err))
                await asyncio.sleep(0.01)

        pumper = asyncio.create_task(pump(), name="tk-pump")
        runner = asyncio.create_task(workers.run(), name="pipecat-runner")
        try:
            await until(lambda: len(tap.images) > 25, 30, "the idle face")
            pcm = to_int16(speech_like(speech_s, rate=rate, seed=3))[:, 0]
            step = rate // 25
            out["t_say"] = time.monotonic()
            await task.queue_frames([TTSStartedFrame(context_id="c1")]
                                    + [TTSAudioRawFrame(audio=pcm[k:k + step].tobytes(), sample_rate=rate,
                                                        num_channels=1, context_id="c1")
                                       for k in range(0, len(pcm), step)]
                                    + [TTSStoppedFrame(context_id="c1")])
            await until(lambda: tap.stopped_at is not None, 30, "the end of the speech")
            await asyncio.sleep(0.6)  # the idle face again
            out["t_end"] = time.monotonic()
            await task.queue_frame(EndFrame())
            await asyncio.wait_for(asyncio.shield(runner), 10)
            out["ended"] = "EndFrame"
        finally:
            if not runner.done():
                out["ended"] = "cancelled"
                await task.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            pumper.cancel()
            (pumped,) = await asyncio.gather(pumper, return_exceptions=True)
            root.destroy()
            if not isinstance(pumped, asyncio.CancelledError):
                raise RuntimeError("the Tk pump failed") from pumped
        out.update(images_out=avatar.images_out, audio_out=avatar.audio_out, stopped_at=tap.stopped_at,
                   tap_images=[t for t, _ in tap.images], tap_audio=[t for t, _ in tap.audio])
        with open(sent_path, "wb") as f:
            f.write(b"".join(a for _, a in tap.audio))
        np.save(sent_path + ".speech.npy", pcm)
        return out


out = asyncio.run(main())  # shuts the loop's default executor down too (its threads are asyncio's own)
deadline = time.monotonic() + 3  # the transport shuts its audio writer's executor down without waiting
while set(threading.enumerate()) - before and time.monotonic() < deadline:
    time.sleep(0.05)
out["waited"] = round(time.monotonic() + 3 - deadline, 2)
out["alive"] = [t.name for t in set(threading.enumerate()) - before]
print(json.dumps(out))
"""


@pytest.fixture()
def file_audio_home(tmp_path) -> tuple[dict[str, str], Path]:
    """HOME with an .asoundrc whose default playback device writes to a file; that file."""
    home = tmp_path / "home"
    home.mkdir()
    played = tmp_path / "played.raw"
    (home / ".asoundrc").write_text(ASOUNDRC.format(played=played))
    env = dict(os.environ, HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("DISPLAY", None)
    return env, played


def test_pipecat_tk_local_output_shows_the_avatar_and_plays_its_speech(xvfb, file_audio_home, tmp_path) -> None:
    from PIL import features

    if not features.check("xcb"):
        pytest.skip("Pillow was built without XCB (no ImageGrab from an X display)")
    env, played = file_audio_home
    sent = tmp_path / "sent.raw"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, xvfb, str(sent), str(RATE), str(SPEECH_S)],
        env=dict(env, DISPLAY=xvfb), cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    w, h = out["size"]
    fps = out["fps"]

    # the pipeline ended on its EndFrame, nothing left running
    assert out["ended"] == "EndFrame"
    assert out["alive"] == []

    # the window: the transport's label showed the processor's frames at their size, a new
    # picture about every 1/fps (the transport's video task redraws the latest frame, each a
    # new Tk photo "pyimageN": N counts them, also those the 10 ms polling did not see)
    photos = [p for p in out["photos"] if p[2:] == [w, h]]
    assert photos, out["photos"][:5]
    t0, t1 = photos[0][0], out["t_end"]
    numbers = [int(name.removeprefix("pyimage")) for t, name, *_ in photos if t <= t1]
    drawn = numbers[-1] - numbers[0]
    rate = drawn / (t1 - t0)
    assert 0.6 * fps < rate < 1.1 * fps, (drawn, t1 - t0)
    emitted = sum(1 for t in out["tap_images"] if t0 < t <= t1)  # the processor's pictures, in real time
    assert 0.8 * fps < emitted / (t1 - t0) < 1.1 * fps, (emitted, t1 - t0)
    # screenshots of the window are frames the processor emitted, exactly, and recent ones;
    # while speaking they change (the mouth moves)
    shots = out["shots"]
    tap_t = out["tap_images"]
    matched = [(t, k) for t, k, _ in shots if k is not None]
    assert len(matched) >= 0.8 * len(shots) and len(matched) > 20, \
        f"{len(matched)} of {len(shots)} screenshots were emitted frames (errors {[e for *_, e in shots if e is not None][:10]})"
    lags = [t - tap_t[k] for t, k in matched]
    assert float(np.median(lags)) < 0.5, lags
    talking = {k for t, k in matched if out["t_say"] + 0.3 < t < out["stopped_at"]}
    assert len(talking) >= 5, talking

    # the sound: PortAudio played exactly the speech the processor sent, all of it
    played_pcm = np.fromfile(played, np.int16)
    sent_pcm = np.fromfile(sent, np.int16)
    speech = np.load(str(sent) + ".speech.npy")
    assert out["audio_out"] == len(out["tap_audio"]) > 0
    assert np.array_equal(played_pcm, sent_pcm)
    assert abs(len(played_pcm) / RATE - SPEECH_S) < 0.1, len(played_pcm) / RATE
    # the speech itself, in step (through the model's 16 kHz and back); it may start anywhere
    # in the first audible frame (the idle clock is not frame-aligned), so up to one frame late
    per_frame = RATE // 25
    n = min(len(played_pcm) - per_frame, len(speech))
    heard, said = played_pcm.astype(np.float64), speech[:n].astype(np.float64)
    lead, corr = max(((k, float(np.corrcoef(heard[k : k + n], said)[0, 1])) for k in range(per_frame + 1)),
                     key=lambda kc: kc[1])
    assert corr > 0.9, (lead, corr)
    # and sound and picture went out together: speech frames only between the first speech and its end
    assert out["t_say"] < min(out["tap_audio"]) and max(out["tap_audio"]) <= out["stopped_at"]
    print(f"Tk window: {rate:.1f} pictures/s, {len(matched)}/{len(shots)} screenshots exact "
          f"(lag p50 {1000 * float(np.median(lags)):.0f} ms); audio {len(played_pcm) / RATE:.2f} s played, "
          f"corr {corr:.3f} from sample {lead}; "
          f"threads gone after {out['waited']} s")

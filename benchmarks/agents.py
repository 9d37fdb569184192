"""Text in and interruption over real WebRTC connections on loopback (issue 12's figures).

- ``serve``: an in-process broadcast server; a real aiortc viewer watches. Each round:
  ``POST /say`` of a long text, then ``POST /interrupt`` mid-sentence. Measured at the
  viewer: time from the say request to the first loud audio and to the first moving picture
  (espeak-ng synthesis of the first sentence included); time from the interrupt to silence
  (the first received audio frame from which on every frame is silent) and to the idle face
  (the first frame from which on the picture stays still); latency = the later of the two.
- ``pipecat``: the same through a pipecat pipeline (espeak-ng TTS service, the avatar
  processor, pipecat's SmallWebRTC transport) to an aiortc peer: ``TTSSpeakFrame`` to the
  first sound and moving picture, ``InterruptionFrame`` to silence and idle face. The
  difference to ``serve`` is the processor's (and pipecat's transport's) added latency.

Video times are the arrival of a frame's last RTP packet where known (a browser decodes on
it; aiortc's own receiver waits for the next frame), else its decoding; both peers decode
each audio packet as it arrives (no prefetch, as benchmarks/webrtc.py). The idle face is
reached at the last picture change after the interrupt (the model's rest state is put back
at once; VP8 keeps a static picture at the quality it first coded it, so a comparison with
the earlier idle picture would measure the codec). The model is the
small random-weight responsive one (testsupport), as in benchmarks/webrtc.py; 80 ms
look-ahead. Writes benchmarks/results/agents.json.

    python benchmarks/agents.py --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testsupport/ (not installed)

from testsupport.loopback_client import LoopbackViewer, audio_responsive_model  # noqa: E402

TEXT = ("Hello there. This is a long sentence for the benchmark, and it keeps going with more and more "
        "words so that the interrupt always lands in the middle of it while the avatar speaks.")
LOUD = 0.05  # audio peak that counts as speech
SILENT = 0.01  # audio peak that counts as silence


def onset_and_stop(times: list[float], peaks: list[float], images: list[np.ndarray], vtimes: list[float],
                   t_say: float, t_int: float) -> dict[str, float]:
    """The four times of one round (seconds, relative to its request). The idle face: the
    mean of the pictures in the second before the say; a picture is idle when it is as close
    to it as those were (VP8's coding noise), or far closer than speaking ones."""
    at, pk = np.asarray(times), np.asarray(peaks)
    vt = np.asarray(vtimes[: len(images)])
    before = [k for k, t in enumerate(vt) if t_say - 1.0 < t < t_say][-12:]
    ref = np.mean([images[k].astype(np.float32) for k in before], axis=0)
    dist = np.array([float(np.abs(img.astype(np.float32) - ref).mean()) for img in images])
    idle_d = dist[before]
    moving = max(4 * float(np.median(idle_d)) + 0.3, 0.6)
    out: dict[str, float] = {}
    loud = at[(at > t_say) & (pk > LOUD)]
    out["say_to_sound_s"] = float(loud.min() - t_say) if loud.size else float("nan")
    mv = vt[(vt > t_say) & (dist > moving)]
    out["say_to_moving_frame_s"] = float(mv.min() - t_say) if mv.size else float("nan")
    after = at > t_int
    noisy = np.flatnonzero(after & (pk >= SILENT))
    first_quiet = noisy.max() + 1 if noisy.size else np.flatnonzero(after)[0]
    out["interrupt_to_silence_s"] = float(at[first_quiet] - t_int) if first_quiet < len(at) else float("nan")
    # the idle face: the picture stops changing (the rest state is put back at the interrupt;
    # measured as motion, since VP8 keeps a static picture at the quality it first coded it)
    motion = np.r_[0.0, [float(np.abs(b.astype(np.float32) - a.astype(np.float32)).mean())
                         for a, b in zip(images[:-1], images[1:])]]
    still_limit = max(4 * float(np.median(motion[before])) + 0.3, 0.6)
    if os.environ.get("AGENTS_DEBUG"):
        print("MOTION after", np.round(motion[vt > t_int][:20], 2), "limit", round(still_limit, 2))
    later = np.flatnonzero((vt > t_int) & (motion > still_limit))
    first_idle = later.max() if later.size else np.flatnonzero(vt > t_int)[0]  # the last change brought it
    out["interrupt_to_idle_face_s"] = float(vt[first_idle] - t_int) if first_idle < len(vt) else float("nan")
    out["interrupt_latency_s"] = max(out["interrupt_to_silence_s"], out["interrupt_to_idle_face_s"])
    return out


async def http(port: int, method: str, path: str) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def video_times(viewer: LoopbackViewer) -> list[float]:
    """Arrival of each frame's last RTP packet where known (else its decoding)."""
    rec = viewer.video
    out = []
    for t, pts in zip(rec.times, rec.rtp):
        try:
            out.append(rec.last_packet.get(rec.rtp_timestamp(pts), t))
        except Exception:
            out.append(t)
    return out


async def bench_serve(rounds: int, rng: np.random.Generator) -> list[dict[str, float]]:
    import torch

    from realtime_sda.server import AvatarServer, ServerConfig

    model = audio_responsive_model()
    h, w = model.config.img_size
    still = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    results = []
    async with AvatarServer(model, ServerConfig(port=0, broadcast=True), still) as srv:
        # the viewer's audio jitter buffer decodes each packet as it comes (as benchmarks/webrtc.py)
        viewer = LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", mode="watch", audio_prefetch=0)
        await viewer.connect()
        try:
            await viewer.wait_frames(60, timeout=30)
            for _ in range(rounds):
                await asyncio.sleep(1.5)
                t_say = time.monotonic()
                status, _ = await http(srv.port, "POST", "/say?text=" + quote(TEXT))
                assert status == 200
                for _ in range(300):
                    if any(t > t_say and np.abs(a).max() > LOUD for t, a in zip(viewer.audio.times[-20:], viewer.audio.data[-20:])):
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(float(rng.uniform(0.5, 1.5)))
                t_int = time.monotonic()
                await http(srv.port, "POST", "/interrupt")
                await asyncio.sleep(1.5)
                peaks = [float(np.abs(a).max()) for a in viewer.audio.data]
                results.append(onset_and_stop(viewer.audio.times, peaks, viewer.video.data,
                                              video_times(viewer), t_say, t_int))
                print("serve", {k: round(1000 * v) if np.isfinite(v) else None for k, v in results[-1].items()}, flush=True)
        finally:
            await viewer.close()
    return results


async def bench_pipecat(rounds: int, rng: np.random.Generator) -> list[dict[str, float]]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError
    from pipecat.frames.frames import EndFrame, InterruptionFrame, TTSSpeakFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
    from pipecat.workers.runner import WorkerRunner

    from realtime_sda.integrations.pipecat import EspeakTTSService, SDAAvatarProcessor
    from realtime_sda.streaming import InferenceWorker
    from testsupport.streaming import random_still

    model = audio_responsive_model()
    rate = 24000
    atimes: list[float] = []
    peaks: list[float] = []
    vtimes: list[float] = []
    images: list[np.ndarray] = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    from realtime_sda.server.peer import set_audio_prefetch

    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            set_audio_prefetch(transceiver.receiver, 0)  # as the serve viewer
    readers: list[asyncio.Task[None]] = []

    async def read(track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    vtimes.append(time.monotonic())
                    images.append(frame.to_ndarray(format="rgb24"))
                else:
                    atimes.append(time.monotonic())
                    peaks.append(float(np.abs(frame.to_ndarray()).max()) / 32768.0)

    pc.on("track", lambda track: readers.append(asyncio.get_running_loop().create_task(read(track), name="bench-peer")))
    results = []
    async with InferenceWorker(model) as worker:
        session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
        avatar = SDAAvatarProcessor(session)
        width, height = avatar.size
        await pc.setLocalDescription(await pc.createOffer())
        conn = SmallWebRTCConnection(ice_servers=[])
        await conn.initialize(sdp=pc.localDescription.sdp, type="offer")
        answer = conn.get_answer()
        transport = SmallWebRTCTransport(conn, TransportParams(
            audio_out_enabled=True, audio_out_sample_rate=rate, audio_out_end_silence_secs=0, video_out_enabled=True,
            video_out_width=width, video_out_height=height, video_out_framerate=round(avatar.fps)))
        task = PipelineWorker(Pipeline([EspeakTTSService(sample_rate=rate), avatar, transport.output()]),
                              params=PipelineParams(audio_out_sample_rate=rate), idle_timeout_secs=None)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(task)
        running = asyncio.create_task(runner.run(), name="bench-pipecat")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            for _ in range(300):
                if len(vtimes) > 60:
                    break
                await asyncio.sleep(0.05)
            for _ in range(rounds):
                await asyncio.sleep(1.5)
                t_say = time.monotonic()
                await task.queue_frame(TTSSpeakFrame(TEXT))
                for _ in range(300):
                    if any(t > t_say and p > LOUD for t, p in zip(atimes[-20:], peaks[-20:])):
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(float(rng.uniform(0.5, 1.5)))
                t_int = time.monotonic()
                await task.queue_frame(InterruptionFrame())
                await asyncio.sleep(1.5)
                results.append(onset_and_stop(atimes, peaks, images, vtimes, t_say, t_int))
                print("pipecat", {k: round(1000 * v) if np.isfinite(v) else None for k, v in results[-1].items()}, flush=True)
        finally:
            await task.queue_frame(EndFrame())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(running, 10)
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await pc.close()
            await conn.disconnect()
    return results


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in rows[0]:
        v = np.array([r[key] for r in rows if np.isfinite(r[key])]) * 1000
        if not v.size:
            continue
        out[key[:-2] + "_ms"] = {"median": round(float(np.median(v)), 1), "p90": round(float(np.percentile(v, 90)), 1),
                                         "min": round(float(v.min()), 1), "max": round(float(v.max()), 1), "n": int(v.size)}
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    load_before = os.getloadavg()[0]
    serve = await bench_serve(args.rounds, rng)
    pipecat = await bench_pipecat(args.rounds, rng) if not args.no_pipecat else []
    res: dict[str, Any] = {
        "what": "say/interrupt over WebRTC on loopback (benchmarks/agents.py)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}",
        "model": "random-weight responsive tiny model (64x48, 16 kHz), 80 ms look-ahead",
        "rounds": args.rounds,
        "serve": summary(serve),
        "serve_rounds": serve,
    }
    if pipecat:
        res["pipecat"] = summary(pipecat)
        res["pipecat_rounds"] = pipecat
        res["pipecat_added_ms"] = {k: round(res["pipecat"][k]["median"] - res["serve"][k]["median"], 1) for k in res["serve"]}
    return res


def main(args: argparse.Namespace) -> None:
    res = asyncio.run(measure(args))
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_rounds")}, indent=1))
    out = Path(__file__).resolve().parent / "results" / "agents.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-pipecat", action="store_true")
    main(p.parse_args())

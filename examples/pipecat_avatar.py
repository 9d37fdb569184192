"""A pipecat pipeline that speaks a few sentences through the local avatar to a WebRTC peer.

    pip install 'realtime-sda[pipecat]'
    python examples/pipecat_avatar.py -o pipecat_avatar.mp4

Pipeline: espeak-ng as a pipecat TTS service -> the avatar processor -> pipecat's
SmallWebRTC (aiortc) transport. The WebRTC peer here is an aiortc peer in the same process
that records what it receives into the MP4, so the example runs anywhere; in an app, the
browser's offer comes through pipecat's own SmallWebRTC signalling (its runner or
``SmallWebRTCRequestHandler``) and the rest stays the same. ``--interrupt-after S`` sends
pipecat's ``InterruptionFrame`` S seconds into the speech (the avatar stops mid-sentence).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np

SENTENCES = [
    "Hello, I am a talking face that runs on this computer.",
    "Pipecat sends me the speech, and I move my lips with it.",
    "When nobody speaks, I blink and wait.",
]


class RecordingPeer:
    """The WebRTC peer: receives the avatar's audio and video and keeps them."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        self.audio: list[tuple[float, np.ndarray]] = []
        self.video: list[tuple[float, np.ndarray]] = []
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: object) -> None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._read(track), name="peer-read"))

    async def _read(self, track: object) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                if track.kind == "video":  # type: ignore[attr-defined]
                    self.video.append((time.monotonic(), frame.to_ndarray(format="rgb24")))
                else:
                    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                    self.audio.append((time.monotonic(), pcm.astype(np.int16)))

    def speaking_ended(self, quiet_s: float = 1.5) -> bool:
        """Sound came and has been silent for ``quiet_s``."""
        loud = [t for t, a in self.audio if np.abs(a).max() > 300]
        return bool(loud) and time.monotonic() - loud[-1] > quiet_s

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


async def main(args: argparse.Namespace) -> None:
    from aiortc import RTCSessionDescription
    from pipecat.frames.frames import EndFrame, InterruptionFrame, TTSSpeakFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
    from pipecat.workers.runner import WorkerRunner

    from realtime_sda import load_model, save_video
    from realtime_sda.integrations.pipecat import EspeakTTSService, SDAAvatarProcessor
    from realtime_sda.media.image import default_avatar_path
    from realtime_sda.streaming import InferenceWorker

    rate = 24000
    model = load_model(args.model)
    async with InferenceWorker(model) as worker:
        renderer, still = await worker.prepare_photo(args.avatar or default_avatar_path(), size=args.size)
        session = await worker.open_session(still, max_backlog_ms=None, renderer=renderer)
        avatar = SDAAvatarProcessor(session)
        width, height = avatar.size
        peer = RecordingPeer()
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=peer.pc.localDescription.sdp, type="offer")
        answer = connection.get_answer()
        transport = SmallWebRTCTransport(connection, TransportParams(
            audio_out_enabled=True, audio_out_sample_rate=rate, audio_out_end_silence_secs=0,
            video_out_enabled=True, video_out_width=width, video_out_height=height, video_out_framerate=round(avatar.fps)))
        pipeline = Pipeline([EspeakTTSService(voice=args.voice, sample_rate=rate), avatar, transport.output()])
        task = PipelineWorker(pipeline, params=PipelineParams(audio_out_sample_rate=rate), idle_timeout_secs=None)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(task)
        running = asyncio.create_task(runner.run(), name="pipecat-runner")
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            await asyncio.sleep(1.0)  # the idle face first
            for sentence in SENTENCES:
                await task.queue_frame(TTSSpeakFrame(sentence))
            if args.interrupt_after is not None:
                await asyncio.sleep(args.interrupt_after)
                await task.queue_frame(InterruptionFrame())
            for _ in range(600):  # at most a minute
                if peer.speaking_ended():
                    break
                await asyncio.sleep(0.1)
        finally:
            await task.queue_frame(EndFrame())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(running, 10)
            await peer.close()
            await connection.disconnect()
    video = np.stack([img for _, img in peer.video]).transpose(0, 3, 1, 2)
    audio = np.concatenate([a for _, a in peer.audio])[:, None]
    out = save_video(video, audio, args.output, video_rate=avatar.fps, audio_rate=48000)
    print(f"{len(peer.video)} frames ({width}x{height}) and {len(audio) / 48000:.1f} s of sound received: {out}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", type=Path, default=Path("pipecat_avatar.mp4"))
    p.add_argument("--avatar", help="a photo with one face (default: the bundled avatar)")
    p.add_argument("--model", default="default", help="default, grid, timit, crema or a checkpoint path")
    p.add_argument("--size", type=int, default=256, help="long side of the frames, pixels")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (en-us, en+f3, de, ...)")
    p.add_argument("--interrupt-after", type=float, default=None, metavar="S",
                   help="interrupt the speech S seconds after it was queued")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

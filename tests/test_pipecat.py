"""The pipecat processor in a real pipecat pipeline: espeak-ng through pipecat's TTS service,
the avatar processor, pipecat's aiortc-based SmallWebRTC transport, and a real aiortc peer on
loopback receiving the avatar: the lips move with the speech, sound and picture arrive
together, an ``InterruptionFrame`` brings back silence and the idle face."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("pipecat")
pytest.importorskip("aiortc")

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]

TEXT = ("Hello from the pipeline. This second sentence is long enough, with a few more words in it, "
        "to be interrupted while the avatar is still speaking it.")


class Peer:
    """A real aiortc peer that receives the pipeline's audio and video and records them."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        self.audio: list[tuple[float, np.ndarray]] = []
        self.video: list[tuple[float, np.ndarray]] = []
        self.tasks: list[asyncio.Task] = []

        @self.pc.on("track")
        def on_track(track) -> None:
            self.tasks.append(asyncio.get_running_loop().create_task(self._read(track), name=f"peer-{track.kind}"))

    async def _read(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    self.video.append((now, frame.to_ndarray(format="rgb24")))
                else:
                    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                    self.audio.append((now, pcm.astype(np.float32) / 32768.0))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pc.close()


async def _until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_pipecat_pipeline_speaks_through_the_avatar_to_a_webrtc_peer_and_interrupts() -> None:
    from aiortc import RTCSessionDescription
    from pipecat.frames.frames import EndFrame, InterruptionFrame, TTSSpeakFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
    from pipecat.workers.runner import WorkerRunner

    from realtime_sda.integrations.pipecat import EspeakTTSService, SDAAvatarProcessor
    from realtime_sda.streaming import InferenceWorker
    from testsupport.loopback_client import audio_responsive_model
    from testsupport.streaming import random_still

    model = audio_responsive_model()
    rate = 24000

    async def main():
        async with InferenceWorker(model) as worker:
            session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            avatar = SDAAvatarProcessor(session)
            width, height = avatar.size
            peer = Peer()
            await peer.pc.setLocalDescription(await peer.pc.createOffer())
            conn = SmallWebRTCConnection(ice_servers=[])
            await conn.initialize(sdp=peer.pc.localDescription.sdp, type="offer")
            answer = conn.get_answer()
            transport = SmallWebRTCTransport(conn, TransportParams(
                audio_out_enabled=True, audio_out_sample_rate=rate, video_out_enabled=True,
                video_out_width=width, video_out_height=height, video_out_framerate=round(avatar.fps),
                audio_out_end_silence_secs=0))
            pipeline = Pipeline([EspeakTTSService(sample_rate=rate), avatar, transport.output()])
            task = PipelineWorker(pipeline, params=PipelineParams(audio_out_sample_rate=rate), idle_timeout_secs=None)
            workers = WorkerRunner(handle_sigint=False)
            await workers.add_workers(task)
            runner = asyncio.create_task(workers.run(), name="test-pipecat-runner")
            try:
                await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
                await _until(lambda: len(peer.video) > 40, 30, "the idle face at the peer")
                t_say = time.monotonic()
                await task.queue_frame(TTSSpeakFrame(TEXT))
                await _until(lambda: sum(np.abs(a).max() > 0.05 for t, a in peer.audio if t > t_say) > 50, 30,
                             "speech at the peer")
                await asyncio.sleep(1.0)
                t_int = time.monotonic()
                await task.queue_frame(InterruptionFrame())
                await asyncio.sleep(2.0)
                return peer.audio, peer.video, t_say, t_int, avatar.interruptions, (width, height)
            finally:
                await task.queue_frame(EndFrame())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(runner, 10)
                if not runner.done():
                    await task.cancel()
                    await asyncio.gather(runner, return_exceptions=True)
                await peer.close()
                await conn.disconnect()

    audio, video, t_say, t_int, interruptions, size = asyncio.run(main())
    assert interruptions >= 1
    assert all(img.shape == (size[1], size[0], 3) for _, img in video)
    at = np.array([t for t, _ in audio])
    peak = np.array([float(np.abs(a).max()) for _, a in audio])
    assert peak[(at > t_say) & (at < t_int)].max() > 0.1  # the speech was heard
    assert peak[at > t_int + 0.5].max() < 0.01  # and stopped by the interruption
    vt = np.array([t for t, _ in video])
    imgs = np.stack([img.astype(np.int16) for _, img in video])
    motion = np.abs(np.diff(imgs, axis=0)).reshape(len(imgs) - 1, -1).mean(axis=1)
    first_sound = at[(at > t_say) & (peak > 0.05)].min()
    idle = motion[(vt[1:] > t_say - 1.0) & (vt[1:] < t_say)]
    talking = motion[(vt[1:] > first_sound + 0.2) & (vt[1:] < t_int)]
    after = motion[vt[1:] > t_int + 0.6]
    assert len(idle) > 10 and len(talking) > 10 and len(after) > 10  # pictures all along: never a frozen face
    assert np.median(talking) > 3 * max(np.median(idle), np.median(after), 0.3), (idle, talking, after)
    # sound and picture arrive together: the first moving picture near the first sound
    moving = vt[1:][(vt[1:] > t_say) & (motion > 3 * max(np.median(idle), 0.3))]
    offset = float(moving.min() - first_sound)
    print(f"A/V at the peer: first moving picture {1000 * offset:+.0f} ms after the first sound")
    assert abs(offset) < 0.25

"""A real aiortc viewer for tests and benchmarks: connects to an :class:`AvatarServer` over
loopback, sends a signal as its microphone, and records the avatar media it receives with
each item's sender-side wall time (from the RTCP sender reports, as a browser does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from realtime_sda.errors import require
from realtime_sda.media.audio import to_int16

__all__ = ["SignalTrack", "GatedSignalTrack", "Received", "LoopbackViewer", "audio_responsive_model"]

RATE = 48000
PTIME = 960


def _ms():
    return require("aiortc.mediastreams", "server", "The loopback client")


class SignalTrack(_ms().MediaStreamTrack):
    """A microphone stand-in: ``signal`` (float mono at 48 kHz) in 20 ms frames, paced in
    real time, then silence. ``sent_at[k]`` is the monotonic time frame k was handed over."""

    kind = "audio"

    def __init__(self, signal: np.ndarray, channels: int = 2) -> None:
        super().__init__()
        self.signal = np.asarray(signal, dtype=np.float32)
        self.channels = channels
        self.sent_at: list[float] = []
        self._start: float | None = None
        self._k = 0

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._k * PTIME / RATE
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return self._next_frame()

    def _next_frame(self) -> Any:
        """Frame ``k`` of the signal (then silence), noted in ``sent_at``."""
        import av

        chunk = np.zeros(PTIME, dtype=np.float32)
        part = self.signal[self._k * PTIME : (self._k + 1) * PTIME]
        chunk[: len(part)] = part
        pcm = to_int16(chunk)[:, 0]
        pcm = np.repeat(pcm, self.channels)  # packed (interleaved) channels
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo" if self.channels == 2 else "mono")
        frame.sample_rate = RATE
        frame.pts = self._k * PTIME
        frame.time_base = Fraction(1, RATE)
        self.sent_at.append(time.monotonic())
        self._k += 1
        return frame


class GatedSignalTrack(SignalTrack):
    """A microphone that sends a frame (one RTP packet) only when the test allows it
    (:meth:`release`), with no real-time pacing: what the receiver does with a given number
    of packets is then independent of timing."""

    def __init__(self, signal: np.ndarray, channels: int = 2) -> None:
        super().__init__(signal, channels)
        self.released = 0
        self._gate = asyncio.Condition()

    async def release(self, n: int) -> None:
        """Let ``n`` more frames go out."""
        async with self._gate:
            self.released += n
            self._gate.notify_all()

    async def recv(self) -> Any:
        async with self._gate:
            await self._gate.wait_for(lambda: self._k < self.released)
        return self._next_frame()


@dataclass
class Received:
    """Media received on one track: arrival time, RTP timestamp, payload."""

    times: list[float] = field(default_factory=list)
    rtp: list[int] = field(default_factory=list)
    data: list[np.ndarray] = field(default_factory=list)
    reports: list[tuple[float, int, float]] = field(default_factory=list)  # (sender NTP s, RTP ts, arrival)
    #: RTP timestamp -> arrival of the frame's last packet (marker bit): when a receiver that
    #: completes frames on the marker, as browsers do, could decode it (aiortc's own receiver
    #: waits for the next frame's first packet)
    last_packet: dict[int, float] = field(default_factory=dict)

    mapper: Any = None  # aiortc's receiver maps RTP timestamps to pts from 0; its origin

    def rtp_timestamp(self, pts: int) -> int:
        """The RTP timestamp of a received frame's ``pts``."""
        return (self.mapper._origin + pts) % 2**32

    def sender_time(self, pts: int, clock: int, near: float | None = None) -> float:
        """Sender wall time (NTP seconds) of a received frame's pts (pts + the receiver's
        timestamp origin = the RTP timestamp), from the sender report that arrived closest to
        ``near`` (monotonic; default: the latest). The sender may re-time its stream (its
        playout clock adapts), so a report describes the media sent around it."""
        if not self.reports or self.mapper is None or self.mapper._origin is None:
            raise RuntimeError("no RTCP sender report or RTP timestamp origin yet")
        if near is None:
            ntp, ref, _ = self.reports[-1]
        else:
            ntp, ref, _ = min(self.reports, key=lambda r: abs(r[2] - near))
        rtp_ts = self.rtp_timestamp(pts)
        delta = (rtp_ts - ref + 2**31) % 2**32 - 2**31
        return ntp + delta / clock


class LoopbackViewer:
    """``async with LoopbackViewer(url, signal=...) as v: await v.wait_frames(50)``."""

    def __init__(self, url: str, signal: np.ndarray | None = None, mode: str = "mic",
                 photo: bytes | None = None, origin: str | None = None, keep_images: bool = True,
                 audio_prefetch: int | None = None, mic: SignalTrack | None = None) -> None:
        self.url = url
        self.audio_prefetch = audio_prefetch  # the avatar's audio as the server receives the mic; None: aiortc's
        self.mode = mode
        self.photo = photo
        self.origin = origin
        self.keep_images = keep_images
        if mic is None and mode == "mic":  # the microphone: ``mic``, or ``signal`` paced in real time
            mic = SignalTrack(signal if signal is not None else np.zeros(0, np.float32))
        self.mic = mic if mode == "mic" else None
        self.video = Received()
        self.audio = Received()
        self.messages: list[dict[str, Any]] = []
        self.pc: Any = None
        self.ws: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._new_video = asyncio.Event()

    async def __aenter__(self) -> "LoopbackViewer":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def connect(self, timeout: float = 20.0) -> None:
        aiortc = require("aiortc", "server", "The loopback client")
        client = require("websockets.asyncio.client", "server", "The loopback client")
        headers = {"Origin": self.origin} if self.origin else None
        self.ws = await client.connect(self.url, additional_headers=headers, max_size=2**23)
        ready = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.messages.append(ready)
        if ready.get("type") != "ready":
            raise RuntimeError(f"server refused: {ready}")
        if self.photo is not None:
            await self.ws.send(self.photo)
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.messages.append(reply)
            if reply.get("type") != "avatar":
                raise RuntimeError(f"photo refused: {reply}")
        self.pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        if self.mic is not None:
            self.pc.addTrack(self.mic)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        if self.audio_prefetch is not None:
            from realtime_sda.server.peer import set_audio_prefetch

            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "audio":
                    set_audio_prefetch(transceiver.receiver, self.audio_prefetch)

        @self.pc.on("track")
        def _on_track(track: Any) -> None:
            rec = self.video if track.kind == "video" else self.audio
            self._tasks.append(asyncio.get_running_loop().create_task(self._read(track, rec), name=f"viewer-{track.kind}"))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp, "mode": self.mode}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.messages.append(msg)
            if msg["type"] == "answer":
                break
            if msg["type"] == "error":
                raise RuntimeError(f"offer refused: {msg}")
        self.answer_sdp = msg["sdp"]
        await self.pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=msg["sdp"], type="answer"))
        for transceiver in self.pc.getTransceivers():
            self._watch_reports(transceiver.receiver, self.video if transceiver.kind == "video" else self.audio)
        self._tasks.append(asyncio.get_running_loop().create_task(self._read_ws(), name="viewer-ws"))

    def _watch_reports(self, receiver: Any, rec: Received) -> None:
        """Record RTCP sender reports (NTP time <-> RTP timestamp) as they arrive, and for
        video when each frame's last RTP packet arrived."""
        rtcp = require("aiortc.rtp", "server", "The loopback client")
        original = receiver._handle_rtcp_packet
        rec.mapper = receiver._RTCRtpReceiver__timestamp_mapper  # RTP timestamp -> pts origin

        async def handle(packet: Any) -> None:
            if isinstance(packet, rtcp.RtcpSrPacket):
                info = packet.sender_info
                rec.reports.append((info.ntp_timestamp / 2**32, info.rtp_timestamp, time.monotonic()))
            await original(packet)

        receiver._handle_rtcp_packet = handle
        if receiver is not None and rec is self.video:
            original_rtp = receiver._handle_rtp_packet

            async def handle_rtp(packet: Any, arrival_time_ms: int) -> None:
                if packet.marker:
                    rec.last_packet.setdefault(packet.timestamp, time.monotonic())
                await original_rtp(packet, arrival_time_ms=arrival_time_ms)

            receiver._handle_rtp_packet = handle_rtp

    async def _read(self, track: Any, rec: Received) -> None:
        ms = _ms()
        with contextlib.suppress(ms.MediaStreamError):
            while True:
                frame = await track.recv()
                rec.times.append(time.monotonic())
                rec.rtp.append(int(frame.pts))
                if track.kind == "video":
                    rec.data.append(frame.to_ndarray(format="rgb24") if self.keep_images else np.empty(0))
                    self._new_video.set()
                else:
                    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
                    rec.data.append(pcm.astype(np.float32) / 32768.0)

    async def _read_ws(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.messages.append(json.loads(raw))

    async def wait_frames(self, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` video frames have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.video.times) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {len(self.video.times)} of {n} video frames arrived in {timeout} s")
            self._new_video.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_video.wait(), left)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        if self.pc is not None:
            await asyncio.wait_for(self.pc.close(), 5)
        if self.ws is not None:
            await self.ws.close()


def audio_responsive_model(config: Any = None, seed: int = 1) -> Any:
    """A random-weight model (real layout and engine) whose frames visibly follow the audio.

    Random weights damp the audio path about 10x per layer, so a random model's picture does
    not move with sound; latency and lip-sync measurements need it to. This one has
    deterministic noise (noise GRU zeroed), stronger BatchNorm gains in the audio encoder and
    a louder content path in the generator: silence gives a still picture and speech changes
    it from the first frame whose window hears it.
    """
    import torch

    from testsupport.models import random_model, tiny_config

    model = random_model(config or tiny_config(), seed=seed)
    cfg = model.config
    with torch.no_grad():
        for p in model.generator.rnn_noise.parameters():
            p.zero_()
        for mod in model.encoder.encoder.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.mul_(5.0)
                mod.bias.zero_()
        model.encoder.rnn.weight_ih_l0.mul_(3.0)
        model.generator.dcl[0][0].weight[: cfg.rnn_gen_dim].mul_(100.0)
        for block in model.generator.dcl[1:5]:
            block.dcl1.weight[: block.dcl1.weight.shape[0] // 2].mul_(10.0)
    return model.eval()

"""One browser's WebRTC connection: the offer/answer exchange, the avatar tracks going out,
and the microphone coming in (decoded, downmixed and pushed into an avatar session)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import numpy as np

from ..errors import RealtimeSDAError, require
from ..streaming.tasks import cancel_and_wait
from .signaling import SignalingError
from .tracks import ViewerFeed, make_tracks

__all__ = ["PeerSession", "audio_frame_to_mono", "restrict_ice_to", "set_audio_prefetch", "DEFAULT_AUDIO_PREFETCH"]

log = logging.getLogger(__name__)

#: aiortc's own receive prefetch is 4 packets (80 ms of Opus at 20 ms per packet); 0: none
DEFAULT_AUDIO_PREFETCH = 0
_prefetch_warned = False


def audio_frame_to_mono(frame: Any) -> np.ndarray:
    """An ``av.AudioFrame`` (any sample format, planar or packed, any channel count) as a
    float32 mono signal: integer formats are scaled to [-1, 1], channels averaged."""
    data = frame.to_ndarray()
    channels = max(len(frame.layout.channels), 1)
    if frame.format.is_planar:
        data = data.reshape(channels, -1)
    else:
        data = data.reshape(-1, channels).T
    if np.issubdtype(data.dtype, np.integer):
        scale = float(np.iinfo(data.dtype).max)
        data = data.astype(np.float32) / scale
    return data.astype(np.float32, copy=False).mean(axis=0)


_ice_original: Any = None
_ice_active: list[list[str]] = []  # restrictions in force, the latest applies


def restrict_ice_to(addresses: list[str]) -> Callable[[], None]:
    """Gather ICE host candidates only on ``addresses`` (e.g. ``["127.0.0.1"]`` for a
    loopback-only server) until the returned function is called. aioice otherwise lists every
    interface and never loopback. Restrictions nest; the last one in force applies."""
    global _ice_original
    ice = require("aioice.ice", "server", "The WebRTC server")
    if not _ice_active:
        _ice_original = ice.get_host_addresses
    fixed = list(addresses)
    _ice_active.append(fixed)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        latest = _ice_active[-1]
        return [a for a in latest if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    ice.get_host_addresses = get_host_addresses

    def undo() -> None:
        if not any(r is fixed for r in _ice_active):
            return  # already undone
        _ice_active[:] = [r for r in _ice_active if r is not fixed]
        if not _ice_active:
            ice.get_host_addresses = _ice_original

    return undo


_immediate_class: Any = None


def _immediate_buffer_class() -> Any:
    """A subclass of aiortc's jitter buffer that hands each audio packet over as soon as it
    is next in sequence (an Opus packet is a whole frame; aiortc's own buffer waits until a
    later packet shows that it is complete, i.e. at least one more packet, 20 ms)."""
    global _immediate_class
    if _immediate_class is None:
        jb = require("aiortc.jitterbuffer", "server", "The WebRTC server")

        class ImmediateAudioBuffer(jb.JitterBuffer):  # type: ignore[name-defined]
            def _remove_frame(self, sequence_number: int) -> Any:
                packet = self._packets[self._origin % self._capacity]
                if packet is None:  # the next packet in sequence is missing: wait for it
                    return None
                self.remove(1)
                return jb.JitterFrame(data=packet._data, timestamp=packet.timestamp)

        _immediate_class = ImmediateAudioBuffer
    return _immediate_class


def _warn_once() -> None:
    global _prefetch_warned
    if not _prefetch_warned:
        _prefetch_warned = True
        log.warning("this aiortc version has no audio jitter buffer prefetch to set; "
                    "microphone audio keeps aiortc's default receive delay")


def set_audio_prefetch(receiver: Any, packets: int) -> bool:
    """Make an aiortc audio receiver decode a packet once ``packets`` later ones have arrived
    (aiortc: 4, i.e. 80 ms; each packet is 20 ms). 1 is aiortc's minimum (it learns that a
    packet is complete from the next one); 0 decodes each packet as soon as it arrives in
    sequence (the receiver then uses :func:`_immediate_buffer_class`'s buffer).

    aiortc has no public setting for this: the receiver's private jitter buffer is changed
    (or, for 0, replaced before any packet came) when it has the expected shape. If it does
    not (another aiortc version), a warning is logged once and aiortc's default stays.
    Returns whether the setting was applied.
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    buffer = getattr(receiver, name, None)
    expected = all(hasattr(buffer, a) for a in ("_packets", "_origin", "_capacity", "remove", "capacity"))
    if buffer is None or not expected or not isinstance(getattr(buffer, "_prefetch", None), int):
        _warn_once()
        return False
    if packets > 0:
        buffer._prefetch = int(packets)
        return True
    try:
        cls = _immediate_buffer_class()
    except Exception:  # aiortc.jitterbuffer moved or changed shape
        _warn_once()
        return False
    if not isinstance(buffer, cls):
        if buffer._origin is not None:  # packets already came: leave it to aiortc's minimum
            buffer._prefetch = 0
            return True
        setattr(receiver, name, cls(capacity=buffer.capacity, prefetch=0))
    return True


class PeerSession:
    """An ``RTCPeerConnection`` that sends one viewer's avatar tracks (both in one
    MediaStream) and, in ``mic`` mode, hands the received microphone audio to ``on_audio``."""

    def __init__(self, ice_servers: list[str], video_rate: float, name: str,
                 audio_prefetch: int | None = DEFAULT_AUDIO_PREFETCH, playout_margin_s: float | None = None) -> None:
        aiortc = require("aiortc", "server", "The WebRTC server")
        config = aiortc.RTCConfiguration(iceServers=[aiortc.RTCIceServer(urls=u) for u in ice_servers])
        self.pc = aiortc.RTCPeerConnection(configuration=config)
        self.name = name
        self.audio_prefetch = audio_prefetch  # None: aiortc's default
        self.feed = ViewerFeed(period_s=1.0 / video_rate, margin_s=playout_margin_s)
        self.video, self.audio = make_tracks(self.feed, video_rate)
        self._mic_task: asyncio.Task[None] | None = None
        self.on_audio: Callable[[np.ndarray, int], None] | None = None
        self.failed = asyncio.Event()
        self.mic_frames = 0

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                self.failed.set()

        @self.pc.on("track")
        def _track(track: Any) -> None:
            if track.kind == "audio" and self._mic_task is None:
                self._mic_task = asyncio.get_running_loop().create_task(self._pump_mic(track), name=f"{name}-mic")

    async def answer(self, sdp: str, want_mic: bool) -> str:
        """Apply the browser's offer and return our answer SDP (SignalingError if unusable)."""
        aiortc = require("aiortc", "server", "The WebRTC server")
        try:
            await self.pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError... on bad SDP
            raise SignalingError("bad_sdp", f"the offer could not be used: {type(exc).__name__}: {str(exc)[:200]}") from None
        kinds = {t.kind for t in self.pc.getTransceivers()}
        if self.audio_prefetch is not None and want_mic:
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "audio":
                    set_audio_prefetch(transceiver.receiver, self.audio_prefetch)
        if "video" not in kinds:
            raise SignalingError("bad_sdp", "the offer has no video section: offer to receive video (and audio)")
        # addTrack reuses the offered transceivers; a peer connection gives all its senders
        # one stream id, so the browser gets video and audio in ONE MediaStream (lip sync).
        self.pc.addTrack(self.video)
        if "audio" in kinds:
            self.pc.addTrack(self.audio)
        if not want_mic:
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "audio":
                    transceiver.direction = "sendonly"
        try:
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:  # an offer aiortc accepted but cannot answer
            raise SignalingError("bad_sdp", f"the offer could not be answered: {type(exc).__name__}: {str(exc)[:200]}") from None
        return self.pc.localDescription.sdp

    async def _pump_mic(self, track: Any) -> None:
        """Received microphone audio -> ``on_audio`` (the session resamples it)."""
        mediastreams = require("aiortc.mediastreams", "server", "The WebRTC server")
        try:
            while True:
                frame = await track.recv()
                self.mic_frames += 1
                if self.on_audio is not None:
                    self.on_audio(audio_frame_to_mono(frame), int(frame.sample_rate))
        except mediastreams.MediaStreamError:
            pass  # the browser stopped its microphone
        except RealtimeSDAError as exc:  # e.g. the session was closed meanwhile: stop feeding it
            log.debug("%s: microphone pump stopped: %s", self.name, exc)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the tracks, the microphone task and the connection (bounded by ``timeout``)."""
        self.feed.close()
        await cancel_and_wait(self._mic_task, timeout)
        try:
            await asyncio.wait_for(self.pc.close(), timeout)
        except asyncio.TimeoutError:
            log.warning("%s: peer connection did not close within %.1f s", self.name, timeout)

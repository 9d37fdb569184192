"""The avatar's outgoing media: one video and one audio track per viewer, fed the same
:class:`~realtime_sda.streaming.VideoFrame` objects and paced by one shared clock.

Both tracks map the master clock (model-rate audio samples, ``VideoFrame.pts * time_base``)
to the wall clock through one :class:`~.playout.PlayoutClock` (which makes the playout
decisions), so a frame and its own audio period are sent at the same moment with timestamps
from the same master time: the browser's RTCP-based lip sync then plays them together.
Frames wait in a small bounded queue (drop-oldest); a frame that is late while a newer one
waits is dropped, never delayed (when even the newest is late the playout clock slips, and
it catches up again once frames come early). Audio is gap-free: periods that did not arrive
in time are sent as silence.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import require
from ..media.audio import to_int16
from .playout import DEFAULT_MARGIN_S, PlayoutClock

av = require("av", "server", "The WebRTC server")
soxr = require("soxr", "server", "The WebRTC server")
_mediastreams = require("aiortc.mediastreams", "server", "The WebRTC server")
if TYPE_CHECKING:  # the names as types (at run time they come through require, with its message)
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from av import AudioFrame, VideoFrame
else:
    MediaStreamTrack = _mediastreams.MediaStreamTrack
    MediaStreamError = _mediastreams.MediaStreamError

__all__ = ["PlayoutClock", "ViewerFeed", "AvatarVideoTrack", "AvatarAudioTrack", "OUT_AUDIO_RATE", "VIDEO_CLOCK", "make_tracks"]

OUT_AUDIO_RATE = 48000  # Opus
VIDEO_CLOCK = 90000  # RTP video clock
AUDIO_PTIME_SAMPLES = OUT_AUDIO_RATE // 50  # 20 ms


def _master_seconds(frame: Any) -> float:
    return float(frame.pts * frame.time_base)


class ViewerFeed:
    """One viewer's bounded queues. ``put`` never blocks: a full video queue drops its
    oldest frame (a slow peer sees fewer frames, never later ones); the audio queue holds
    ``audio_queue`` periods and drops the oldest likewise."""

    def __init__(self, video_queue: int = 3, audio_queue: int = 50, period_s: float = 0.04,
                 margin_s: float | None = None) -> None:
        self.video: deque[tuple[Any, float]] = deque(maxlen=video_queue)  # (frame, arrival)
        self.audio: deque[Any] = deque(maxlen=audio_queue)
        self._video_ready = asyncio.Event()
        self._audio_ready = asyncio.Event()
        # the playout margin absorbs how unevenly frames arrive (their audio must be here
        # before its first 20 ms packet is due): DEFAULT_MARGIN_S by default, checked by
        # the clock (check_margin). Playback moves earlier
        # again when every frame of the last 10 s came early by more than a further half
        # margin (a hiccup's slip does not stay)
        margin = DEFAULT_MARGIN_S if margin_s is None else margin_s
        self.clock = PlayoutClock(margin_s=margin, period_s=period_s, window=max(1, round(10.0 / period_s)),
                                reclaim_s=margin / 2)
        self.closed = False
        self.active = False  # open(): on the first recv() of either track
        self.received = 0
        self.dropped_full = 0
        self.cut = False  # interrupt(): the audio track drops the audio it already holds

    def put(self, frame: Any) -> None:
        """Queue one frame for both tracks (event-loop thread only). Frames made before the
        first ``recv`` (while the connection is still being set up) are not kept: the clock
        is anchored on a fresh frame."""
        if self.closed or not self.active:
            return
        if len(self.video) == self.video.maxlen:
            self.dropped_full += 1
        self.video.append((frame, time.monotonic()))
        self.audio.append(frame)
        self.received += 1
        self._video_ready.set()
        self._audio_ready.set()

    def open(self) -> None:
        """Start keeping frames. The tracks call it on their first ``recv``; a consumer that
        reads the queues itself calls it before its first read."""
        self.active = True

    def interrupt(self) -> None:
        """Drop every frame waiting to be sent, and (through ``cut``) the audio the audio
        track already holds: an interrupted avatar goes silent at the next 20 ms packet, not
        after the playout delay (event-loop thread only)."""
        self.video.clear()
        self.audio.clear()
        self.cut = True

    def close(self) -> None:
        """End both tracks (their next ``recv`` raises MediaStreamError)."""
        self.closed = True
        self._video_ready.set()
        self._audio_ready.set()

    async def next_video(self) -> tuple[Any, float] | None:
        """The oldest waiting frame and its arrival time (None once closed)."""
        self.open()
        while not self.video:
            if self.closed:
                return None
            self._video_ready.clear()
            await self._video_ready.wait()
        return self.video.popleft()

    def pop_audio(self) -> list[Any]:
        items = list(self.audio)
        self.audio.clear()
        return items

    async def wait_audio(self) -> None:
        self.open()
        if not self.audio and not self.closed:
            self._audio_ready.clear()
            await self._audio_ready.wait()


class AvatarVideoTrack(MediaStreamTrack):
    """The avatar's video: ``VideoFrame.image`` at 90 kHz timestamps from the master clock."""

    kind = "video"

    def __init__(self, feed: ViewerFeed, video_rate: float) -> None:
        super().__init__()
        self.feed = feed
        self.period_s = 1.0 / float(video_rate)
        self.sent = 0
        self.dropped_late = 0
        self.last_index = -1  # master index of the last frame sent
        self._last_pts = -1

    async def recv(self) -> "VideoFrame":
        clock = self.feed.clock
        while True:
            item = await self.feed.next_video()
            if item is None or self.readyState != "live":
                self.stop()
                raise MediaStreamError
            frame, arrival = item
            master = _master_seconds(frame)
            clock.anchor(master)
            if round(clock.output_time(master) * VIDEO_CLOCK) <= self._last_pts:
                continue  # stale: a frame at or before one already sent
            wait = clock.place(master, arrival, self.period_s, newer_waiting=bool(self.feed.video))
            if wait is None:
                self.dropped_late += 1
                continue
            if wait > 0:
                await asyncio.sleep(wait)
            pts = round(clock.output_time(master) * VIDEO_CLOCK)
            if pts <= self._last_pts:
                continue
            self._last_pts = pts
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
            out.pts = pts
            out.time_base = Fraction(1, VIDEO_CLOCK)
            self.sent += 1
            self.last_index = int(frame.index)
            return out


class AvatarAudioTrack(MediaStreamTrack):
    """The speech behind the avatar, delayed by exactly the pipeline's latency: each frame's
    own audio period (``VideoFrame.audio``) resampled to 48 kHz, sent in 20 ms frames whose
    timestamps come from the same master clock as the video. Silence fills what is missing.
    Frames that carry their neighbours (``audio_padded``) at a rate that maps whole samples
    to 48 kHz (16 and 50 kHz do) are resampled one by one (soxr HQ), so their audio is complete
    when the frame arrives; others (no look-ahead) go through a streaming resampler of
    soxr's quick quality, the one that holds back no output."""

    kind = "audio"

    def __init__(self, feed: ViewerFeed) -> None:
        super().__init__()
        self.feed = feed
        self._next: int | None = None  # next output sample (48 kHz, output timeline)
        self._segments: deque[tuple[int, np.ndarray]] = deque()  # (master 48 kHz start, int16)
        self._resampler: Any = None
        self._rate = 0
        self._expect_index: int | None = None
        self._pos = 0  # master 48 kHz position of the resampler's next output sample
        self.sent = 0
        self.silent = 0

    def _ingest(self) -> None:
        if self.feed.cut:  # interrupted: what was held is not to be heard
            self.feed.cut = False
            self._segments.clear()
            self._resampler = None
        for frame in self.feed.pop_audio():
            rate = int(frame.audio_rate)
            pad, stride = int(frame.audio_pad), len(frame.audio)
            if frame.audio_padded is not None and (pad * OUT_AUDIO_RATE) % rate == 0 == (stride * OUT_AUDIO_RATE) % rate:
                # the frame alone, with its neighbours from its window: ready as soon as the
                # frame is (a streaming resampler holds back up to ~30 ms of output)
                out = soxr.resample(np.asarray(frame.audio_padded, np.float32), rate, OUT_AUDIO_RATE, quality="HQ")
                lo, n = pad * OUT_AUDIO_RATE // rate, stride * OUT_AUDIO_RATE // rate
                pcm16 = to_int16(out[lo : lo + n])[:, 0]
                self._segments.append((round(_master_seconds(frame) * OUT_AUDIO_RATE), pcm16))
                self._resampler = None
                continue
            if self._resampler is None or rate != self._rate or frame.index != self._expect_index:
                # "QQ": soxr's better filters hold back 20-40 ms of output in streaming
                # mode, which would miss the packets; this one holds back < 1 ms
                self._resampler = soxr.ResampleStream(rate, OUT_AUDIO_RATE, 1, dtype="float32", quality="QQ")
                self._rate = rate
                self._pos = round(_master_seconds(frame) * OUT_AUDIO_RATE)
            self._expect_index = frame.index + 1
            pcm = np.asarray(frame.audio, dtype=np.float32).reshape(-1)
            out = self._resampler.resample_chunk(pcm)
            if len(out):
                pcm16 = to_int16(out)[:, 0]
                self._segments.append((self._pos, pcm16))
                self._pos += len(out)

    def _take(self, start: int, n: int) -> tuple[np.ndarray, bool]:
        """Samples [start, start+n) of the master timeline (48 kHz), silence where missing."""
        out = np.zeros(n, dtype=np.int16)
        found = False
        while self._segments and self._segments[0][0] + len(self._segments[0][1]) <= start:
            self._segments.popleft()  # entirely in the past
        for seg_start, seg in self._segments:
            if seg_start >= start + n:
                break
            lo, hi = max(seg_start, start), min(seg_start + len(seg), start + n)
            if hi > lo:
                out[lo - start : hi - start] = seg[lo - seg_start : hi - seg_start]
                found = True
        return out, found

    async def recv(self) -> "AudioFrame":
        clock = self.feed.clock
        if self.readyState != "live" or self.feed.closed:
            self.stop()
            raise MediaStreamError
        if self._next is None:
            while not clock.anchored.is_set():
                await self.feed.wait_audio()
                if self.feed.closed:
                    self.stop()
                    raise MediaStreamError
                self._ingest()
                if self._segments and not clock.anchored.is_set():
                    clock.anchor(self._segments[0][0] / OUT_AUDIO_RATE)
            first = self._segments[0][0] if self._segments else 0
            self._next = round(clock.output_time(first / OUT_AUDIO_RATE) * OUT_AUDIO_RATE)
        assert clock.origin is not None
        wait = clock.origin + self._next / OUT_AUDIO_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._ingest()
        master_start = self._next - round(clock.shift * OUT_AUDIO_RATE)
        pcm, found = self._take(master_start, AUDIO_PTIME_SAMPLES)
        self.silent += not found
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OUT_AUDIO_RATE
        frame.pts = self._next
        frame.time_base = Fraction(1, OUT_AUDIO_RATE)
        self._next += AUDIO_PTIME_SAMPLES
        self.sent += 1
        return frame


def make_tracks(feed: ViewerFeed, video_rate: float) -> tuple[AvatarVideoTrack, AvatarAudioTrack]:
    """(video, audio) tracks reading from one viewer's feed."""
    return AvatarVideoTrack(feed, video_rate), AvatarAudioTrack(feed)

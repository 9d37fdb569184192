"""``RecorderSink``: records a live session to MP4 (H.264 video + AAC audio) with PyAV.

Video timestamps come from the frames' pts (the audio master clock): frame ``i`` is written
at ``i / video_rate``; the audio track is each frame's own ``stride`` samples, resampled to
48 kHz (a rate AAC supports), so picture and sound stay in sync even if frames were skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import RealtimeSDAError
from ...media.video import AAC_RATE, DEFAULT_CRF, Mp4Muxer
from ..frames import VideoFrame
from ..resample import StreamResampler
from .base import Sink

if TYPE_CHECKING:
    from ..session import AvatarSession
    from ..stats import StreamStats

__all__ = ["RecorderSink", "AAC_RATE"]


class RecorderSink(Sink):
    """Write frames and their audio to ``path`` (.mp4). ``crf``: x264 quality (lower is better)."""

    name = "recorder"

    def __init__(self, path: str | os.PathLike[str], crf: int = DEFAULT_CRF, audio: bool = True, queue_size: int = 1024) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise RealtimeSDAError(f"'{self.path}': give a recording file name ending in .mp4")
        self.crf = crf
        self.audio = audio
        self.queue_size = queue_size
        self.frames_written = 0
        self._mux: Mp4Muxer | None = None

    def open(self, session: "AvatarSession") -> None:
        cfg = session.config
        h, w = session.frame_size
        self._stride = cfg.stride
        # no zero-latency tuning: a file gains nothing from it, and x264's zerolatency mode
        # blurred faces enough to change their dlib identity (0.28 -> 0.79 on one photo)
        self._mux = Mp4Muxer(self.path, cfg.video_rate, (h + h % 2, w + w % 2), audio=self.audio, crf=self.crf)
        if self.audio:
            self._resampler = StreamResampler(AAC_RATE)
            self._audio_in = 0  # model-rate samples given to the resampler

    def write(self, frame: VideoFrame, stats: "StreamStats") -> None:
        assert self._mux is not None, "open() first"
        img = frame.image
        h, w = self._mux.size
        if img.shape[:2] != (h, w):
            img = np.pad(img, ((0, h - img.shape[0]), (0, w - img.shape[1]), (0, 0)), mode="edge")
        self._mux.video(img, frame.pts // self._stride)
        self.frames_written += 1
        if self._mux.has_audio:
            # frames skipped by a slow queue get silence, so the audio keeps the pts timeline
            audio = frame.audio
            if frame.pts > self._audio_in:
                audio = np.concatenate([np.zeros(frame.pts - self._audio_in, np.float32), audio])
            self._audio_in = frame.pts + frame.audio.size
            self._mux.audio(self._resampler.process(audio, frame.audio_rate))

    def close(self) -> None:
        if self._mux is None:
            return
        try:
            if self._mux.has_audio:
                for tail in self._resampler.flush():
                    self._mux.audio(tail)
        finally:
            self._mux.close()
            self._mux = None

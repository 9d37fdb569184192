"""``RecorderSink``: records a live session to MP4 (H.264 video + AAC audio) with PyAV.

Video timestamps come from the frames' pts (the audio master clock): frame ``i`` is written
at ``i / video_rate``; the audio track is each frame's own ``stride`` samples, resampled to
48 kHz (a rate AAC supports), so picture and sound stay in sync even if frames were skipped.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import RealtimeSDAError
from ..frames import VideoFrame
from ..resample import StreamResampler
from .base import Sink

if TYPE_CHECKING:
    from ..session import AvatarSession
    from ..stats import StreamStats

__all__ = ["RecorderSink", "AAC_RATE"]

AAC_RATE = 48000


class RecorderSink(Sink):
    """Write frames and their audio to ``path`` (.mp4). ``crf``: x264 quality (lower is better)."""

    name = "recorder"

    def __init__(self, path: str | os.PathLike[str], crf: int = 18, audio: bool = True, queue_size: int = 1024) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise RealtimeSDAError(f"'{self.path}': give a recording file name ending in .mp4")
        self.crf = crf
        self.audio = audio
        self.queue_size = queue_size
        self.frames_written = 0
        self._container: Any = None

    def open(self, session: "AvatarSession") -> None:
        import av

        cfg = session.config
        h, w = cfg.img_size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rate = Fraction(cfg.video_rate).limit_denominator(1001)
        self._stride = cfg.stride
        self._container = av.open(str(self.path), mode="w")
        self._video = self._container.add_stream("libx264", rate=self._rate)
        self._video.height, self._video.width = h + h % 2, w + w % 2
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(self.crf), "preset": "veryfast", "tune": "zerolatency"}
        self._astream = None
        if self.audio:
            self._astream = self._container.add_stream("aac", rate=AAC_RATE, layout="mono")
            self._resampler = StreamResampler(AAC_RATE)
            self._audio_in = 0  # model-rate samples given to the resampler
            self._audio_pts = 0  # AAC-rate samples encoded

    def write(self, frame: VideoFrame, stats: "StreamStats") -> None:
        import av

        img = frame.image
        h, w = self._video.height, self._video.width
        if img.shape[:2] != (h, w):
            img = np.pad(img, ((0, h - img.shape[0]), (0, w - img.shape[1]), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        vf.pts = frame.pts // self._stride
        vf.time_base = 1 / self._rate
        for packet in self._video.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1
        if self._astream is not None:
            # frames skipped by a slow queue get silence, so the audio keeps the pts timeline
            audio = frame.audio
            if frame.pts > self._audio_in:
                audio = np.concatenate([np.zeros(frame.pts - self._audio_in, np.float32), audio])
            self._audio_in = frame.pts + frame.audio.size
            self._encode_audio(self._resampler.process(audio, frame.audio_rate))

    def _encode_audio(self, samples: np.ndarray) -> None:
        import av

        if samples.size == 0:
            return
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32)[None, :], format="flt", layout="mono")
        af.sample_rate = AAC_RATE
        af.pts = self._audio_pts
        af.time_base = Fraction(1, AAC_RATE)
        for packet in self._astream.encode(af):
            self._container.mux(packet)
        self._audio_pts += samples.size

    def close(self) -> None:
        if self._container is None:
            return
        try:
            if self._astream is not None:
                for tail in self._resampler.flush():
                    self._encode_audio(tail)
                for packet in self._astream.encode(None):
                    self._container.mux(packet)
            for packet in self._video.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
